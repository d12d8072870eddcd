// Request parsing shared by the Worker-side router and the NetworkObject's app: bounded JSON
// bodies, schema validation into the API's 400 message, bearer credentials.
import type { z } from "zod";
import { ControllerError, describeZodError, invalidRequest } from "./errors.ts";

/** Largest body any Controller endpoint accepts (500 activity events fit comfortably). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** `application/json` or a JSON-based type (`application/…+json`), parameters ignored. */
export function isJsonContentType(header: string | null): boolean {
  const type = header?.split(";")[0]?.trim().toLowerCase() ?? "";
  return type === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type);
}

/**
 * Reads a JSON body. An empty body is `{}` only where every field is optional (`allowEmpty`).
 * With `requireJsonType`, a body that is not declared JSON is refused (415): a `text/plain` or form
 * body is what a cross-site form or a confused script sends, never what an API client means.
 */
export async function readJson(
  req: Request,
  opts: { allowEmpty?: boolean; requireJsonType?: boolean } = {},
): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) throw tooLarge();
  if (text.trim() === "") {
    if (opts.allowEmpty) return {};
    throw invalidRequest("body: a JSON body is required");
  }
  if (opts.requireJsonType && !isJsonContentType(req.headers.get("content-type"))) {
    throw new ControllerError("unsupported_media_type", "body: content-type must be application/json");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw invalidRequest("body: malformed JSON");
  }
}

/** Reads a request body into memory, bounded by MAX_BODY_BYTES; none for GET and HEAD. */
export async function readBody(request: Request): Promise<ArrayBuffer | undefined> {
  if (request.method === "GET" || request.method === "HEAD") return undefined;
  if (Number(request.headers.get("content-length") ?? "0") > MAX_BODY_BYTES) throw tooLarge();
  const body = await request.arrayBuffer();
  if (body.byteLength > MAX_BODY_BYTES) throw tooLarge();
  return body;
}

function tooLarge(): ControllerError {
  return new ControllerError("payload_too_large", `body: larger than ${MAX_BODY_BYTES} bytes`);
}

export function parseWith<S extends z.ZodType>(schema: S, value: unknown, root = "body"): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw invalidRequest(describeZodError(result.error, root));
  return result.data;
}

export async function parseBody<S extends z.ZodType>(
  req: Request,
  schema: S,
  opts: { allowEmpty?: boolean } = {},
): Promise<z.output<S>> {
  return parseWith(schema, await readJson(req, { ...opts, requireJsonType: true }));
}

/** The bearer credential of a request, or undefined. */
export function bearer(req: Request): string | undefined {
  const header = req.headers.get("authorization");
  if (!header) return undefined;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  const token = m?.[1];
  return token && token.length <= 16_384 ? token : undefined;
}
