// Shared by the resume tests (test/e2e/resume.test.ts, test/e2e/resume-direct.test.ts).
import { ResumeRefused, type ResumeSecret, requestResume } from "../../bunlib/resumable.ts";
import { dialDirect } from "../../client/tunnel.ts";

/** How a RESUME attempt ended: undefined when resumed, the REFUSE code, or the error's message. */
export function refusal(attempt: Promise<unknown>): Promise<number | string | undefined> {
  return attempt.then(
    () => undefined,
    (e: unknown) => (e instanceof ResumeRefused ? e.code : (e as Error).message),
  );
}

/**
 * A RESUME sent before TLS on a new TCP connection to a connector's direct port (how a link under
 * TLS resumes), and how it ended (as `refusal`).
 */
export async function resumeBeforeTls(
  port: number,
  secret: ResumeSecret,
  attempt: number,
  received: number,
): Promise<number | string | undefined> {
  return refusal(requestResume(await dialDirect(`127.0.0.1:${port}`), secret, attempt, received, 3_000));
}
