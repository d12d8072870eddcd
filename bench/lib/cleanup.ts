// Everything the benchmark starts is registered here and stopped in reverse order, on success,
// on error and on Ctrl-C, so no iperf3, sshd, workerd or Sallyport process outlives a run.

export class Cleanup {
  private readonly steps: { label: string; fn: () => Promise<void> | void }[] = [];
  private running: Promise<void> | undefined;

  add(label: string, fn: () => Promise<void> | void): void {
    this.steps.push({ label, fn });
  }

  /** Runs (and forgets) the steps added after `mark` — for resources of one section. */
  async unwind(mark: number): Promise<void> {
    while (this.steps.length > mark) await this.runStep(this.steps.pop()!);
  }

  get mark(): number {
    return this.steps.length;
  }

  run(): Promise<void> {
    this.running ??= this.unwind(0);
    return this.running;
  }

  private async runStep(step: { label: string; fn: () => Promise<void> | void }): Promise<void> {
    try {
      await Promise.race([
        Promise.resolve().then(step.fn),
        Bun.sleep(15_000).then(() => {
          throw new Error("timed out");
        }),
      ]);
    } catch (err) {
      process.stderr.write(`bench: stopping ${step.label} failed: ${(err as Error).message}\n`);
    }
  }
}
