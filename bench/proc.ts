/**
 * CPU figures of processes and of the machine, from Linux's `/proc` (clock ticks of
 * 1/100 s), for the benchmarks.
 *
 * @module
 */

/** User plus system CPU seconds of process `pid` (this one by default). */
export function cpuSeconds(pid: number | "self" = "self"): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The machine's CPU time so far by kind, in clock ticks (`/proc/stat`'s first line). */
export function machineTicks(): { busy: number; idle: number; softirq: number } {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = Deno.readTextFileSync(
    "/proc/stat",
  ).split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system + irq + softirq + steal, idle: idle + iowait, softirq };
}
