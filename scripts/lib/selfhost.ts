// The self-hosted edge: the same Worker bundle that `wrangler deploy` uploads, run by plain
// `workerd serve` with a generated workerd.capnp. Durable Objects are SQLite-backed (enableSql)
// and kept on disk (localDisk), one directory per class under the state directory.

export interface WranglerConfig {
  compatibility_date: string;
  compatibility_flags?: string[];
  durable_objects: { bindings: { name: string; class_name: string; script_name?: string }[] };
}

export interface SelfhostOptions {
  /** The public origin (behind the TLS reverse proxy); every token's issuer. */
  publicUrl: string;
  relayUrl?: string;
  /** Where workerd listens (the reverse proxy's upstream), HOST:PORT. */
  listen: string;
  /** Absolute directory for the Durable Objects' SQLite files. */
  stateDir: string;
  /** Path of the bundled Worker module, relative to the capnp file. */
  module: string;
  /** Let the Worker's fetch() reach private addresses too (an IdP inside the network). */
  privateOutbound: boolean;
  devMode?: boolean;
}

/** Cap'n Proto text literal (JSON string escapes are a subset of Cap'n Proto's). */
const str = (s: string) => JSON.stringify(s);

export function workerdConfig(wrangler: WranglerConfig, o: SelfhostOptions): string {
  const dos = wrangler.durable_objects.bindings;
  const bindings = [
    `(name = "PUBLIC_URL", text = ${str(o.publicUrl)})`,
    ...(o.relayUrl ? [`(name = "RELAY_URL", text = ${str(o.relayUrl)})`] : []),
    ...(o.devMode ? ['(name = "DEV_MODE", text = "1")'] : []),
    // A secret stays out of the file: workerd reads it from its own environment at start.
    '(name = "BOOTSTRAP_SECRET", fromEnvironment = "SALLYPORT_BOOTSTRAP_SECRET")',
    ...dos.map((d) => `(name = ${str(d.name)}, durableObjectNamespace = ${str(d.class_name)})`),
  ];
  const namespaces = dos.map(
    // uniqueKey names the class's directory under the state directory: never change it.
    (d) =>
      `(className = ${str(d.class_name)}, uniqueKey = ${str(`sallyport-${d.class_name}`)}, enableSql = true)`,
  );
  const allow = o.privateOutbound ? '["public", "private"]' : '["public"]';
  const indent = (xs: string[]) => xs.map((x) => `    ${x},`).join("\n");
  return `# Sallyport edge for \`workerd serve\`, written by \`npm run selfhost:config\`; regenerate rather
# than edit. Start: SALLYPORT_BOOTSTRAP_SECRET=… workerd serve workerd.capnp
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "sallyport", worker = .sallyport),
    (name = "do-storage", disk = (path = ${str(o.stateDir)}, writable = true)),
    (name = "internet", network = (allow = ${allow}, tlsOptions = (trustBrowserCas = true))),
  ],
  sockets = [
    # Plain HTTP for the TLS reverse proxy in front (docs/deploy.md); keep it off public interfaces.
    (name = "http", address = ${str(o.listen)}, http = (), service = "sallyport"),
  ],
);

const sallyport :Workerd.Worker = (
  modules = [(name = "index.js", esModule = embed ${str(o.module)})],
  compatibilityDate = ${str(wrangler.compatibility_date)},
  compatibilityFlags = [${(wrangler.compatibility_flags ?? []).map(str).join(", ")}],
  bindings = [
${indent(bindings)}
  ],
  durableObjectNamespaces = [
${indent(namespaces)}
  ],
  durableObjectStorage = (localDisk = "do-storage"),
);
`;
}

export interface SplitOptions extends Omit<SelfhostOptions, "module" | "relayUrl"> {
  /** The relay's public origin (its own TLS reverse proxy) and where its workerd socket listens. */
  relayUrl: string;
  relayListen: string;
  /** Bundled modules, relative to the capnp file. */
  controllerModule: string;
  relayModule: string;
}

/**
 * The two-Worker deployment on one workerd: the Controller and the Relay as separate Workers on
 * separate sockets, wired as on Cloudflare (deploy/cloudflare/): the Controller's PRESENCE binding
 * names the relay's class, the relay reads the JWKS through a CONTROLLER service binding.
 */
export function workerdSplitConfig(
  controller: WranglerConfig,
  relay: WranglerConfig,
  o: SplitOptions,
): string {
  const ns = (cls: string) =>
    `(className = ${str(cls)}, uniqueKey = ${str(`sallyport-${cls}`)}, enableSql = true)`;
  const own = (w: WranglerConfig) => w.durable_objects.bindings.filter((d) => !d.script_name);
  const doBinding = (d: { name: string; class_name: string; script_name?: string }) =>
    d.script_name
      ? `(name = ${str(d.name)}, durableObjectNamespace = (className = ${str(d.class_name)}, serviceName = "relay"))`
      : `(name = ${str(d.name)}, durableObjectNamespace = ${str(d.class_name)})`;
  const indent = (xs: string[]) => xs.map((x) => `    ${x},`).join("\n");
  const worker = (
    name: string,
    module: string,
    w: WranglerConfig,
    bindings: string[],
  ) => `const ${name} :Workerd.Worker = (
  modules = [(name = "index.js", esModule = embed ${str(module)})],
  compatibilityDate = ${str(w.compatibility_date)},
  compatibilityFlags = [${(w.compatibility_flags ?? []).map(str).join(", ")}],
  bindings = [
${indent([...bindings, ...w.durable_objects.bindings.map(doBinding)])}
  ],
  durableObjectNamespaces = [
${indent(own(w).map((d) => ns(d.class_name)))}
  ],
  durableObjectStorage = (localDisk = "do-storage"),
);
`;
  const allow = o.privateOutbound ? '["public", "private"]' : '["public"]';
  return `# Sallyport edge as two Workers (Controller and Relay) for \`workerd serve\`, written by
# \`npm run selfhost:config -- --split\`; regenerate rather than edit.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "controller", worker = .controller),
    (name = "relay", worker = .relay),
    (name = "do-storage", disk = (path = ${str(o.stateDir)}, writable = true)),
    (name = "internet", network = (allow = ${allow}, tlsOptions = (trustBrowserCas = true))),
  ],
  sockets = [
    (name = "controller", address = ${str(o.listen)}, http = (), service = "controller"),
    (name = "relay", address = ${str(o.relayListen)}, http = (), service = "relay"),
  ],
);

${worker("controller", o.controllerModule, controller, [
  `(name = "PUBLIC_URL", text = ${str(o.publicUrl)})`,
  `(name = "RELAY_URL", text = ${str(o.relayUrl)})`,
  ...(o.devMode ? ['(name = "DEV_MODE", text = "1")'] : []),
  '(name = "BOOTSTRAP_SECRET", fromEnvironment = "SALLYPORT_BOOTSTRAP_SECRET")',
])}
${worker("relay", o.relayModule, relay, [
  `(name = "PUBLIC_URL", text = ${str(o.publicUrl)})`,
  '(name = "CONTROLLER", service = "controller")',
])}`;
}
