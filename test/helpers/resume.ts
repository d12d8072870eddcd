// Shared by the resume tests (test/e2e/resume.test.ts, test/e2e/resume-direct.test.ts).
import { ResumeRefused } from "../../bunlib/resumable.ts";

/** How a RESUME attempt ended: undefined when resumed, the REFUSE code, or the error's message. */
export function refusal(attempt: Promise<unknown>): Promise<number | string | undefined> {
  return attempt.then(
    () => undefined,
    (e: unknown) => (e instanceof ResumeRefused ? e.code : (e as Error).message),
  );
}
