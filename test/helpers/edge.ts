// Tests start the same local edge as `npm run demo`: real workerd through `wrangler dev`.
export { adminApi, type Edge, freePort, ROOT, startEdge, startWorker } from "../../scripts/lib/local-edge.ts";
