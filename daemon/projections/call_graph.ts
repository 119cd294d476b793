/**
 * Union-find over call-graph nodes (channel uniqueids, linkedids, `bridge:<id>`): two
 * nodes named by one event belong to one call, and so does everything linked to them.
 *
 * @example
 * ```ts
 * import { CallGraph } from "./call_graph.ts";
 * const graph = new CallGraph();
 * graph.link(["1795663687.42", "1795663687.43"]);
 * graph.link(["1795663687.43", "bridge:7b9d"]);
 * console.log(graph.find("bridge:7b9d") === graph.find("1795663687.42")); // true
 * ```
 *
 * @module
 */

/** A disjoint-set forest keyed by node name. */
export class CallGraph {
  #parent = new Map<string, string>();

  /** Adds a node (a call of its own until linked). */
  add(node: string): void {
    if (!this.#parent.has(node)) this.#parent.set(node, node);
  }

  /** Whether the node was added or linked. */
  has(node: string): boolean {
    return this.#parent.has(node);
  }

  /** The representative of the node's call (the node itself when unknown). */
  find(node: string): string {
    let root = node;
    for (
      let up = this.#parent.get(root);
      up !== undefined && up !== root;
      up = this.#parent.get(root)
    ) {
      root = up;
    }
    // Path compression: point everything on the way straight at the root.
    for (let at = node; at !== root;) {
      const up = this.#parent.get(at)!;
      this.#parent.set(at, root);
      at = up;
    }
    return root;
  }

  /** Puts all `nodes` in one call. */
  link(nodes: readonly string[]): void {
    if (nodes.length === 0) return;
    this.add(nodes[0]);
    const root = this.find(nodes[0]);
    for (let i = 1; i < nodes.length; i++) {
      this.add(nodes[i]);
      const other = this.find(nodes[i]);
      if (other !== root) this.#parent.set(other, root);
    }
  }

  /** Every node, grouped by call. */
  groups(): Map<string, string[]> {
    const groups = new Map<string, string[]>();
    for (const node of this.#parent.keys()) {
      const root = this.find(node);
      const group = groups.get(root);
      if (group === undefined) groups.set(root, [node]);
      else group.push(node);
    }
    return groups;
  }
}
