import { randomInt } from 'node:crypto'

/** Randomness, injected, so that a failing seed replays exactly. */
export interface Random {
  /** A uniformly distributed unsigned 32-bit integer. */
  nextU32(): number
}

export const systemRandom: Random = Object.freeze({
  nextU32: () => randomInt(0, 2 ** 32 - 1) >>> 0,
})

/** A small, fast, seeded generator (sfc32) for tests and simulations. */
export class SeededRandom implements Random {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    this.a = 0x9e3779b9
    this.b = 0x243f6a88
    this.c = 0xb7e15162
    this.d = seed >>> 0
    for (let i = 0; i < 15; i++) this.nextU32()
  }

  nextU32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) >>> 0
    return t
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.nextU32() / 2 ** 32) * n)
  }

  chance(p: number): boolean {
    return this.nextU32() / 2 ** 32 < p
  }
}
