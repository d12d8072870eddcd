// The connector's control WebSocket with the relay (docs/architecture.md "Relay"): JSON text
// messages, at most MAX_CONTROL_MESSAGE characters, one schema per direction used by both ends.
// A parser returns a typed message or throws ControlMessageError; nothing is cast.
//
//   relay → connector: {"type":"dial","session":"<sid>"[,"spare":true]} | {"type":"sync"} |
//                      {"type":"refreshed","exp":<seconds>} | {"type":"pong"} | {"type":"ping"}
//   connector → relay: {"type":"refresh","token":"<relay token>"} | {"type":"pong"}
//                      ({"type":"ping"} is answered by the runtime, never parsed)
//
// A dial with "spare" asks for a spare session: dialled now, before any client needs it, and kept
// open until a client's session is spliced to it (docs/architecture.md "Spare sessions"). The
// relay sends it only to a connector that asked for spares when it attached (`spares=N`); an older
// connector parses it as a plain dial.
import { z } from "zod";

export const MAX_CONTROL_MESSAGE = 8192;

export class ControlMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ControlMessageError";
  }
}

const RelayToConnector = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("dial"),
    session: z.string().regex(/^[A-Za-z0-9_-]{22,64}$/),
    spare: z.boolean().optional(),
  }),
  z.object({ type: z.literal("sync") }),
  z.object({ type: z.literal("refreshed"), exp: z.number().int().nonnegative() }),
  z.object({ type: z.literal("pong") }),
  z.object({ type: z.literal("ping") }),
]);
export type RelayToConnectorMessage = z.infer<typeof RelayToConnector>;

const ConnectorToRelay = z.discriminatedUnion("type", [
  z.object({ type: z.literal("refresh"), token: z.string().min(1).max(MAX_CONTROL_MESSAGE) }),
  z.object({ type: z.literal("pong") }),
]);
export type ConnectorToRelayMessage = z.infer<typeof ConnectorToRelay>;

function parse<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  if (typeof data !== "string") throw new ControlMessageError("control messages are JSON text");
  if (data.length > MAX_CONTROL_MESSAGE) throw new ControlMessageError("control message too large");
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    throw new ControlMessageError("control message is not JSON");
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new ControlMessageError("unknown or malformed control message");
  return result.data;
}

export const parseRelayToConnector = (data: unknown): RelayToConnectorMessage =>
  parse(RelayToConnector, data);
export const parseConnectorToRelay = (data: unknown): ConnectorToRelayMessage =>
  parse(ConnectorToRelay, data);
