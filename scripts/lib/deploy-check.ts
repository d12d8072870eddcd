// What `npm run check:deploy` refuses: a deployment whose token issuer (PUBLIC_URL) is a loopback
// or plain-http address, a relay URL likewise, development switches or secrets in plain vars, and
// a target that forgot one of the Durable Object bindings (they are not inherited by wrangler
// environments). Works for the one-Worker edge and for each Worker of the two-Worker deployment
// (deploy/cloudflare/). Pure functions over what `wrangler deploy --dry-run` reports.

export interface DeployTarget {
  vars: Record<string, string>;
  /** Binding name to class name. */
  durableObjects: Record<string, string>;
  /** Service bindings: binding name to Worker name. */
  services?: Record<string, string>;
}

export const DURABLE_OBJECTS: Record<string, string> = {
  ROOT: "ControllerRoot",
  NETWORK: "NetworkObject",
  PRESENCE: "ConnectorPresence",
  SPLICE: "SpliceSession",
};

/** The bindings table of `wrangler deploy --dry-run`: plain vars and Durable Object classes. */
export function parseDryRun(output: string): DeployTarget {
  const vars: Record<string, string> = {};
  const durableObjects: Record<string, string> = {};
  const services: Record<string, string> = {};
  for (const line of output.split("\n")) {
    const v = /^env\.([A-Za-z_][A-Za-z0-9_]*) \((".*")\)\s+Environment Variable\s*$/.exec(line.trim());
    if (v) {
      vars[v[1]!] = JSON.parse(v[2]!) as string;
      continue;
    }
    // "env.PRESENCE (ConnectorPresence, defined in sallyport-relay)" for another Worker's class.
    const d =
      /^env\.([A-Za-z_][A-Za-z0-9_]*) \(([A-Za-z0-9_]+)(?:, defined in [\w-]+)?\)\s+Durable Object\s*$/.exec(
        line.trim(),
      );
    if (d) durableObjects[d[1]!] = d[2]!;
    const w = /^env\.([A-Za-z_][A-Za-z0-9_]*) \(([\w-]+)\)\s+Worker\s*$/.exec(line.trim());
    if (w) services[w[1]!] = w[2]!;
  }
  return { vars, durableObjects, services };
}

const LOOPBACK =
  /^(localhost|.*\.localhost|127(\.\d{1,3}){3}|0\.0\.0\.0|\[::1?\]|\[::ffff:127(\.\d{1,3}){3}\])$/i;
// RFC 2606 / 6761 names: a documentation placeholder, never a real deployment.
const PLACEHOLDER = /(^|\.)(example\.(com|net|org)|example|test|invalid)$/i;

function checkUrl(name: string, value: string, errors: string[], warnings: string[]): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    errors.push(`${name} "${value}" is not a URL`);
    return;
  }
  if (LOOPBACK.test(url.hostname)) {
    errors.push(
      `${name} is ${value}, a loopback address: every token would name an issuer no client can reach. Set it to the public https URL of this deployment.`,
    );
  } else if (url.protocol !== "https:") {
    errors.push(
      `${name} is ${value}: a deployment must be served over https (tokens and tunnels travel through it).`,
    );
  } else if (url.pathname !== "/" || url.search || url.hash) {
    errors.push(`${name} must be an origin only, like https://sallyport.example.com (got ${value}).`);
  } else if (PLACEHOLDER.test(url.hostname)) {
    warnings.push(`${name} is ${value}, a placeholder name: set your own domain before deploying.`);
  }
}

/** Errors make the check fail; warnings fail it only with `strict` (what `npm run deploy` uses). */
export function checkDeployTarget(
  { vars, durableObjects, services }: DeployTarget,
  { strict = false }: { strict?: boolean } = {},
): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (vars.PUBLIC_URL === undefined) errors.push("PUBLIC_URL is not set for this target");
  else checkUrl("PUBLIC_URL", vars.PUBLIC_URL, errors, warnings);
  if (vars.RELAY_URL !== undefined) checkUrl("RELAY_URL", vars.RELAY_URL, errors, warnings);
  if (vars.DEV_MODE !== undefined)
    errors.push(
      "DEV_MODE is set: it enables development-only switches (a country header, a clock offset); remove it.",
    );
  if (vars.BOOTSTRAP_SECRET !== undefined)
    errors.push(
      "BOOTSTRAP_SECRET is a plain var, visible in the dashboard and the config: use `wrangler secret put BOOTSTRAP_SECRET`.",
    );
  // The one-Worker edge binds all four; the Controller Worker the first three (PRESENCE in the
  // relay Worker); the Relay Worker PRESENCE and SPLICE, and reaches the Controller by ROOT or by
  // a CONTROLLER service binding.
  const controller = "NETWORK" in durableObjects || "ROOT" in durableObjects;
  const relay = "SPLICE" in durableObjects;
  const required = [
    ...(controller || !relay ? ["ROOT", "NETWORK", "PRESENCE"] : []),
    ...(relay || !controller ? ["PRESENCE", "SPLICE"] : []),
  ];
  for (const binding of new Set(required)) {
    const cls = DURABLE_OBJECTS[binding]!;
    if (durableObjects[binding] !== cls)
      errors.push(
        `Durable Object binding ${binding} (${cls}) is missing: wrangler environments do not inherit them.`,
      );
  }
  if (relay && !controller && !services?.CONTROLLER)
    errors.push("the relay Worker needs a CONTROLLER service binding to read the Controller's JWKS.");
  return { errors: strict ? [...errors, ...warnings] : errors, warnings: strict ? [] : warnings };
}
