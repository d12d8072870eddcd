// Turns the figures into the stdout report (Markdown tables, pasted as-is into
// docs/performance.md) and evaluates the DESIGN §7 budgets against them.
import { DEFAULT_TUNNEL_WINDOW } from "../../shared/protocol/mux.ts";
import { CONSOLE_P95_TARGET_MS } from "./console-scale.ts";
import { PACED_MIBPS } from "./latency.ts";
import type { Results } from "./results.ts";
import { RESUME_PROBE_INTERVAL_MS } from "./resume.ts";

export interface Target {
  target: string;
  measured: string;
  /** undefined: cannot be measured yet. */
  met: boolean | undefined;
}

export interface ReportContext {
  sshCipher: string;
  spliceMessageBytes: number;
  runs: string;
}

const KIB = 1024;
const MIB = 1024 * 1024;

function bytes(v: number | undefined): string {
  if (v === undefined) return "n/a";
  if (Math.abs(v) >= 10 * MIB) return `${(v / MIB).toFixed(1)} MiB`;
  if (Math.abs(v) >= 10 * KIB) return `${(v / KIB).toFixed(1)} KiB`;
  return `${v.toFixed(0)} B`;
}

function ms(v: number | undefined): string {
  if (v === undefined) return "n/a";
  return Math.abs(v) >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(2)} ms`;
}

function rate(v: number | undefined): string {
  return v === undefined ? "n/a" : v.toFixed(0);
}

function ratio(v: number | undefined): string {
  return v === undefined ? "n/a" : `${v.toFixed(2)}×`;
}

function table(header: string[], rows: string[][], align: ("l" | "r")[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const cell = (s: string, i: number) => (align[i] === "r" ? s.padStart(widths[i]!) : s.padEnd(widths[i]!));
  const line = (cells: string[]) => `| ${cells.map(cell).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (align[i] === "r" ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** Ratios computed from measured figures, added to the results. */
export function addRatios(r: Results): void {
  for (const k of ["single", "single.reverse", "parallel4", "parallel4.reverse"]) {
    const relayed = r.get(`throughput.relayed.${k}`);
    const splice = r.get(`throughput.splice.${k}`);
    const ssh = r.get(`throughput.ssh.${k}`);
    if (relayed !== undefined && splice) r.add(`ratio.relayed_to_splice.${k}`, relayed / splice, "ratio");
    if (relayed !== undefined && ssh) r.add(`ratio.relayed_to_ssh.${k}`, relayed / ssh, "ratio");
    const splice64 = r.get(`throughput.splice_64k.${k}`);
    if (relayed !== undefined && splice64)
      r.add(`ratio.relayed_to_splice_64k.${k}`, relayed / splice64, "ratio");
    const direct = r.get(`throughput.direct_path.${k}`);
    if (direct !== undefined && ssh) r.add(`ratio.direct_path_to_ssh.${k}`, direct / ssh, "ratio");
  }
  for (const id of ["relayed", "direct_path"]) {
    const one = r.get(`throughput.${id}.single`);
    const many = r.get(`throughput.${id}.streams64`);
    if (one && many !== undefined) r.add(`ratio.${id}.streams64_to_single`, many / one, "ratio");
  }
}

export function evaluateTargets(r: Results): Target[] {
  const relayedRatio = r.get("ratio.relayed_to_splice.single");
  const directRatio = r.get("ratio.direct_path_to_ssh.single");
  const added = r.get("latency.new_stream.added_p50");
  const first = r.get("latency.first_connection.p50");
  const idle = r.get("scale.idle_stream.bytes");
  const growth = r.get("scale.stalled_receiver.relay_rss_growth");
  const bound = 2 * DEFAULT_TUNNEL_WINDOW;
  const check = (v: number | undefined, ok: (v: number) => boolean) => (v === undefined ? undefined : ok(v));
  const relayedReverse = r.get("ratio.relayed_to_splice.single.reverse");
  const directReverse = r.get("ratio.direct_path_to_ssh.single.reverse");
  /** One figure of both Sallyport paths (`name(path)`), the worse by `pick`; undefined if either is missing. */
  const worstOfPaths = (name: (path: string) => string, pick: (...v: number[]) => number) => {
    const v = ["relayed", "direct_path"].map((p) => r.get(name(p)));
    return v.every((x) => x !== undefined) ? pick(...(v as number[])) : undefined;
  };
  const worstUnderLoad = worstOfPaths((p) => `latency.new_stream_under_load.${p}.added_p99`, Math.max);
  const worstWakeup = worstOfPaths((p) => `latency.new_stream_under_load.${p}.wakeup_p99`, Math.max);
  const worstFairness = worstOfPaths((p) => `ratio.${p}.streams64_to_single`, Math.min);
  const cpuOf = (path: string, parts: string[]) => {
    const v = parts.map((k) => r.get(`cpu.${path}.${k}`));
    return v.every((x) => x !== undefined) ? (v as number[]).reduce((a, b) => a + b, 0) : undefined;
  };
  const restarts = r.get("resume.restarts");
  const failedStreams = r.get("resume.failed_streams");
  const directCpu = cpuOf("direct_path", ["client", "connector"]);
  const sshCpu = cpuOf("ssh", ["ssh", "sshd"]);
  // The decision stays on the figure of the throughput table; the paired runs' median ratio (each
  // path back to back with its yardstick) is shown beside it, since it drifts less with the machine.
  const withPaired = (v: number | undefined, name: string) => {
    const paired = r.get(name);
    return paired === undefined ? ratio(v) : `${ratio(v)} (paired runs: ${ratio(paired)})`;
  };
  return [
    {
      target: "relayed single-stream throughput ≥ 0.6 × bare workerd splice",
      measured: withPaired(relayedRatio, "ratio.relayed_to_splice.paired.single"),
      met: check(relayedRatio, (v) => v >= 0.6),
    },
    {
      target: "direct-path throughput ≥ 1.0 × ssh -L",
      measured:
        directRatio === undefined
          ? "no direct path yet"
          : withPaired(directRatio, "ratio.direct_path_to_ssh.paired.single"),
      met: check(directRatio, (v) => v >= 1.0),
    },
    {
      target: "relayed ≥ 0.6 × bare workerd splice, single stream, reverse direction",
      measured: withPaired(relayedReverse, "ratio.relayed_to_splice.paired.single.reverse"),
      met: check(relayedReverse, (v) => v >= 0.6),
    },
    {
      target: "direct path ≥ 1.0 × ssh -L, single stream, reverse direction",
      measured: withPaired(directReverse, "ratio.direct_path_to_ssh.paired.single.reverse"),
      met: check(directReverse, (v) => v >= 1.0),
    },
    {
      target: "direct path: client + connector CPU per GiB ≤ ssh + sshd",
      measured:
        directCpu === undefined || sshCpu === undefined
          ? "n/a"
          : `${directCpu.toFixed(2)} vs ${sshCpu.toFixed(2)} s/GiB`,
      met: directCpu === undefined || sshCpu === undefined ? undefined : directCpu <= sshCpu,
    },
    {
      target: "new stream while a bulk transfer runs on the same tunnel: p99 < 5 ms added (worst path)",
      measured: `${ms(worstUnderLoad)} (ssh -L: ${ms(r.get("latency.new_stream_under_load.ssh.added_p99"))}, ssh -D: ${ms(r.get("latency.new_stream_under_load.ssh_socks.added_p99"))}; the client's SOCKS port without a tunnel: ${ms(r.get("latency.new_stream_under_load.direct_path_no_tunnel.added_p99"))}; an idle process's wake-up, p99 late: ${ms(worstWakeup)})`,
      met: check(worstUnderLoad, (v) => v < 5),
    },
    {
      target: "64 parallel streams on one tunnel ≥ 0.9 × one stream (worst path)",
      measured: (() => {
        const paired = ["relayed", "direct_path"].map((p) => r.get(`ratio.${p}.streams64_to_single.paired`));
        return paired.every((v) => v !== undefined)
          ? `${ratio(worstFairness)} (paired runs: ${ratio(Math.min(...(paired as number[])))})`
          : ratio(worstFairness);
      })(),
      met: check(worstFairness, (v) => v >= 0.9),
    },
    {
      target: "new TCP connection over an established tunnel: p50 < 2 ms added over direct",
      measured: ms(added),
      met: check(added, (v) => v < 2),
    },
    {
      target: "first connection (token + relay + TLS + authorization): p50 < 50 ms",
      measured: ms(first),
      met: check(first, (v) => v < 50),
    },
    {
      target: `${r.get("scale.idle_streams") ?? "?"} concurrent idle streams through one connector: < 16 KiB each`,
      measured: bytes(idle),
      met: check(idle, (v) => v < 16 * KIB),
    },
    {
      target: `console pages, GET /api/v1/events and the list endpoints on ${r.get("console.scale.events") ?? "?"} events: p95 < ${CONSOLE_P95_TARGET_MS} ms (issue 16)`,
      measured: `${ms(r.get("console.page.p95"))} / ${ms(r.get("api.events.page.p95"))} / ${ms(r.get("api.list.p95"))}`,
      met:
        r.get("console.page.p95") === undefined ||
        r.get("api.events.page.p95") === undefined ||
        r.get("api.list.p95") === undefined
          ? undefined
          : Math.max(r.get("console.page.p95")!, r.get("api.events.page.p95")!, r.get("api.list.p95")!) <
            CONSOLE_P95_TARGET_MS,
    },
    {
      target: "an open stream survives relay (edge) restarts: no stream fails (issue 15)",
      measured: failedStreams === undefined ? "n/a" : `${failedStreams} failed across ${restarts} restarts`,
      met: check(failedStreams, (v) => v === 0),
    },
    {
      target: `relay memory bounded by flow-control windows (stalled receiver: growth ≤ 2 × ${DEFAULT_TUNNEL_WINDOW / MIB} MiB tunnel window)`,
      measured: bytes(growth),
      met: check(growth, (v) => v <= bound),
    },
  ];
}

export function renderReport(r: Results, targets: Target[], ctx: ReportContext): string {
  const tp = (id: string, k: string) => rate(r.get(`throughput.${id}.${k}`));
  const keys = ["single", "single.reverse", "parallel4", "parallel4.reverse"];
  const paths: [string, string][] = [
    ["loopback", "direct loopback (ceiling)"],
    ["ssh", `OpenSSH ssh -L (${ctx.sshCipher})`],
    ["splice", `bare workerd splice (${ctx.spliceMessageBytes / KIB} KiB messages)`],
    ["relayed", "Sallyport relayed"],
    ["direct_path", "Sallyport direct path"],
  ];
  const throughput = table(
    ["iperf3, MiB/s", "1 stream", "1 stream -R", "4 streams", "4 streams -R"],
    [
      ...paths.map(([id, label]) =>
        r.get(`throughput.${id}.single`) === undefined && id === "direct_path"
          ? [label, "not yet", "not yet", "not yet", "not yet"]
          : [label, ...keys.map((k) => tp(id, k))],
      ),
      ["relayed ÷ bare splice", ...keys.map((k) => ratio(r.get(`ratio.relayed_to_splice.${k}`)))],
      ["relayed ÷ ssh -L", ...keys.map((k) => ratio(r.get(`ratio.relayed_to_ssh.${k}`)))],
      ["direct path ÷ ssh -L", ...keys.map((k) => ratio(r.get(`ratio.direct_path_to_ssh.${k}`)))],
      [
        "relayed ÷ bare splice, paired runs",
        ...keys.map((k) => ratio(r.get(`ratio.relayed_to_splice.paired.${k}`))),
      ],
      [
        "direct path ÷ ssh -L, paired runs",
        ...keys.map((k) => ratio(r.get(`ratio.direct_path_to_ssh.paired.${k}`))),
      ],
    ],
    ["l", "r", "r", "r", "r"],
  );
  const get = (n: string) => r.get(n);
  const other = table(
    ["figure", "value"],
    [
      [
        "SOCKS hop through the client without a tunnel (split-tunnel bypass), 1 stream",
        `${rate(get("throughput.socks_direct.single"))} MiB/s`,
      ],
      [
        "bare splice with 64 KiB messages (Sallyport's own size), 1 stream; relayed ÷ it",
        `${rate(get("throughput.splice_64k.single"))} MiB/s; ${ratio(get("ratio.relayed_to_splice_64k.single"))}`,
      ],
      [
        "relayed, 1 / 4 / 16 concurrent clients of one connector (sum)",
        `${rate(get("throughput.relayed.clients1"))} / ${rate(get("throughput.relayed.clients4"))} / ${rate(get("throughput.relayed.clients16"))} MiB/s`,
      ],
      [
        "64 parallel streams on one tunnel: relayed / direct path (÷ 1 stream)",
        `${rate(get("throughput.relayed.streams64"))} (${ratio(get("ratio.relayed.streams64_to_single"))}) / ${rate(get("throughput.direct_path.streams64"))} (${ratio(get("ratio.direct_path.streams64_to_single"))}) MiB/s`,
      ],
      [
        "40 ms round trip (delay line), 1 stream / -R: direct path; ssh -L; plain TCP",
        `${rate(get("throughput.wan40.direct_path.single"))} / ${rate(get("throughput.wan40.direct_path.single.reverse"))}; ${rate(get("throughput.wan40.ssh.single"))} / ${rate(get("throughput.wan40.ssh.single.reverse"))}; ${rate(get("throughput.wan40.loopback.single"))} / ${rate(get("throughput.wan40.loopback.single.reverse"))} MiB/s (direct path ÷ ssh -L ${ratio(get("ratio.wan40.direct_path_to_ssh.single"))} / ${ratio(get("ratio.wan40.direct_path_to_ssh.single.reverse"))}; tunnel round trip measured ${ms(get("wan40.direct_path.rtt"))})`,
      ],
      [
        "40 ms round trip, a new connection's first answer byte, p50 / p99: ssh -L; SOCKS; HTTP proxy, plain request (sent behind the OPEN)",
        ["ssh", "socks", "http_proxy"]
          .map(
            (id) =>
              `${ms(get(`latency.wan40.new_stream.${id}.p50`))} / ${ms(get(`latency.wan40.new_stream.${id}.p99`))}`,
          )
          .join("; "),
      ],
      [
        "64 parallel streams ÷ 1 stream, paired runs (alternated on the same tunnel): relayed / direct path",
        `${ratio(get("ratio.relayed.streams64_to_single.paired"))} / ${ratio(get("ratio.direct_path.streams64_to_single.paired"))}`,
      ],
      [
        "new stream during a bulk transfer on its tunnel, relayed: p50 / p99 / added p99",
        `${ms(get("latency.new_stream_under_load.relayed.p50"))} / ${ms(get("latency.new_stream_under_load.relayed.p99"))} / ${ms(get("latency.new_stream_under_load.relayed.added_p99"))}`,
      ],
      [
        "new stream during a bulk transfer on its tunnel, direct path: p50 / p99 / added p99",
        `${ms(get("latency.new_stream_under_load.direct_path.p50"))} / ${ms(get("latency.new_stream_under_load.direct_path.p99"))} / ${ms(get("latency.new_stream_under_load.direct_path.added_p99"))}`,
      ],
      [
        "same, direct path, a plain request to the HTTP proxy (sent behind the OPEN, no SOCKS exchange): p50 / p99 / added p99",
        `${ms(get("latency.new_stream_under_load.direct_path_http_proxy.p50"))} / ${ms(get("latency.new_stream_under_load.direct_path_http_proxy.p99"))} / ${ms(get("latency.new_stream_under_load.direct_path_http_proxy.added_p99"))}`,
      ],
      [
        "same client and load, a SOCKS connection it dials itself (not a Resource: no tunnel): p50 / p99 / added p99",
        `${ms(get("latency.new_stream_under_load.direct_path_no_tunnel.p50"))} / ${ms(get("latency.new_stream_under_load.direct_path_no_tunnel.p99"))} / ${ms(get("latency.new_stream_under_load.direct_path_no_tunnel.added_p99"))}`,
      ],
      [
        "new connection during a bulk transfer on the same ssh -L connection: p50 / p99 / added p99",
        `${ms(get("latency.new_stream_under_load.ssh.p50"))} / ${ms(get("latency.new_stream_under_load.ssh.p99"))} / ${ms(get("latency.new_stream_under_load.ssh.added_p99"))}`,
      ],
      [
        `same, bulk paced at ${PACED_MIBPS} MiB/s (cores not saturated): added p99 relayed / direct path`,
        `${ms(get("latency.new_stream_under_load.relayed.paced.added_p99"))} / ${ms(get("latency.new_stream_under_load.direct_path.paced.added_p99"))}`,
      ],
      [
        "new SOCKS connection (ssh -D) during a bulk transfer on the same ssh connection: p50 / p99 / added p99",
        `${ms(get("latency.new_stream_under_load.ssh_socks.p50"))} / ${ms(get("latency.new_stream_under_load.ssh_socks.p99"))} / ${ms(get("latency.new_stream_under_load.ssh_socks.added_p99"))}`,
      ],
      [
        "meanwhile, an idle process's 1 ms timer (the wait for a core): p50 / p99 late, relayed; direct path; ssh -L",
        ["relayed", "direct_path", "ssh"]
          .map(
            (p) =>
              `${ms(get(`latency.new_stream_under_load.${p}.wakeup_p50`))} / ${ms(get(`latency.new_stream_under_load.${p}.wakeup_p99`))}`,
          )
          .join("; "),
      ],
      [
        "new stream during 8 bulk transfers on its tunnel: p50 / p99 relayed; direct path; ssh -L",
        ["relayed", "direct_path", "ssh"]
          .map(
            (p) =>
              `${ms(get(`latency.new_stream_under_load.${p}.parallel8.p50`))} / ${ms(get(`latency.new_stream_under_load.${p}.parallel8.p99`))}`,
          )
          .join("; "),
      ],
      [
        "new TCP connection, direct: p50 / p99",
        `${ms(get("latency.direct.p50"))} / ${ms(get("latency.direct.p99"))}`,
      ],
      [
        "new TCP connection over the tunnel: p50 / p99",
        `${ms(get("latency.new_stream.p50"))} / ${ms(get("latency.new_stream.p99"))}`,
      ],
      [
        "added by the tunnel: p50 / p99",
        `${ms(get("latency.new_stream.added_p50"))} / ${ms(get("latency.new_stream.added_p99"))}`,
      ],
      [
        "first connection of a fresh client: p50 / p99",
        `${ms(get("latency.first_connection.p50"))} / ${ms(get("latency.first_connection.p99"))}`,
      ],
      [
        "first connection, relay 40 ms round trip away over TLS: p50 with a spare relay session / dialled on demand",
        `${ms(get("latency.wan40.first_connection.spare.p50"))} / ${ms(get("latency.wan40.first_connection.on_demand.p50"))}`,
      ],
      [
        `${get("scale.idle_streams") ?? "?"} idle streams, RSS per stream: connector / client`,
        `${bytes(get("scale.idle_stream.bytes"))} / ${bytes(get("scale.idle_stream.client_bytes"))}`,
      ],
      [
        "stalled receiver: bytes the sender got in / relay (workerd) RSS growth",
        `${bytes(get("scale.stalled_receiver.accepted_bytes"))} / ${bytes(get("scale.stalled_receiver.relay_rss_growth"))}`,
      ],
      [
        "connection tokens per second (wrk) / latency p50 / p99",
        `${rate(get("control.tokens_per_second"))} / ${ms(get("control.token_latency.p50"))} / ${ms(get("control.token_latency.p99"))}`,
      ],
      [
        "connector: idle RSS / start to online",
        `${bytes(get("footprint.connector.idle_rss"))} / ${ms(get("footprint.connector.start_to_online"))}`,
      ],
      ["client: idle RSS", bytes(get("footprint.client.idle_rss"))],
      [
        `interactive stream across ${get("resume.restarts") ?? "?"} relay restarts: stall p50 / p99 (failed streams)`,
        `${ms(get("resume.gap.p50"))} / ${ms(get("resume.gap.p99"))} (${get("resume.failed_streams") ?? "n/a"})`,
      ],
      [
        "of which the edge's own restart (kill to /healthz) / flowing again after it: p50 / p99",
        `${ms(get("resume.edge_restart.p50"))} / ${ms(get("resume.edge_restart.p99"))}; ${ms(get("resume.after_edge.p50"))} / ${ms(get("resume.after_edge.p99"))}`,
      ],
      [
        "the client's own resume gap (status: resumes.last_gap_ms): p50 / p99",
        `${ms(get("resume.client_gap.p50"))} / ${ms(get("resume.client_gap.p99"))}`,
      ],
      [
        "binaries: sallyport-connector / sallyport",
        `${bytes(get("footprint.binary.connector"))} / ${bytes(get("footprint.binary.client"))}`,
      ],
    ],
    ["l", "r"],
  );
  const cpuPaths = ["loopback", "ssh", "splice", "splice_64k", "relayed", "direct_path", "socks_direct"];
  /**
   * One row per path, one column per process of the figures `<prefix>.<path>.<process>`; empty
   * when the run measured none.
   */
  const perProcess = (prefix: string, title: string, format: (v: number) => string) => {
    const components = [
      ...new Set(r.list.filter((x) => x.name.startsWith(`${prefix}.`)).map((x) => x.name.split(".")[2]!)),
    ];
    const rows = cpuPaths
      .filter((p) => components.some((c) => r.get(`${prefix}.${p}.${c}`) !== undefined))
      .map((p) => [
        p,
        ...components.map((c) => {
          const v = r.get(`${prefix}.${p}.${c}`);
          return v === undefined ? "" : format(v);
        }),
      ]);
    return rows.length === 0
      ? ""
      : table([title, ...components], rows, ["l", ...components.map(() => "r" as const)]);
  };
  const cpu = perProcess("cpu", "CPU s/GiB, 1 stream", (v) => v.toFixed(2));
  const faults = perProcess("faults", "page faults per GiB, 1 stream", (v) => v.toFixed(0));
  const budget = table(
    ["DESIGN §7 budget", "measured", "status"],
    targets.map((t) => [
      t.target,
      t.measured,
      t.met === undefined ? "not measurable yet" : t.met ? "met" : "NOT met",
    ]),
    ["l", "r", "l"],
  );
  const resumeNote =
    get("resume.restarts") === undefined
      ? []
      : [
          `Stall across a relay restart: one stream through the SOCKS port sends a 16-byte message every ${RESUME_PROBE_INTERVAL_MS} ms to the echo peer; the stall is the longest time between two consecutive echoes, from the last echo before the edge is killed until the stream has flowed again (without a restart: ~${RESUME_PROBE_INTERVAL_MS} ms). p99 of a few restarts is their maximum.`,
          "",
        ];
  return [
    `Throughput (${ctx.runs})`,
    "",
    throughput,
    "",
    other,
    "",
    ...resumeNote,
    ...[cpu, faults].filter((t) => t !== "").flatMap((t) => [t, ""]),
    budget,
    "",
  ].join("\n");
}

/** The console and events API at scale (console-scale.ts): every page's and query's p95. */
export function renderConsoleReport(r: Results, targets: Target[]): string {
  const rows = r.list
    .filter((x) => /^(console\.page|api\.events\.page|api\.list|api\.write)\..+\.p95$/.test(x.name))
    .map((x) => [x.name.replace(/\.p95$/, ""), ms(x.value)]);
  const seeded = `seeded in ${r.get("console.seed.seconds")?.toFixed(1) ?? "?"} s`;
  const lines = [
    `Console and events API at scale (${r.get("console.scale.events") ?? "?"} events, ${seeded}): p95 per page or query`,
    "",
    table(["page or query", "p95"], rows, ["l", "r"]),
    "",
    `console.page.p95 (worst page) ${ms(r.get("console.page.p95"))}; api.events.page.p95 (worst query) ${ms(r.get("api.events.page.p95"))}; api.list.p95 (worst list) ${ms(r.get("api.list.p95"))}; target < ${CONSOLE_P95_TARGET_MS} ms`,
    "",
  ];
  if (targets.length > 0) {
    lines.push(
      table(
        ["target", "measured", "status"],
        targets.map((t) => [t.target, t.measured, t.met === undefined ? "n/a" : t.met ? "met" : "NOT met"]),
        ["l", "r", "l"],
      ),
      "",
    );
  }
  return lines.join("\n");
}
