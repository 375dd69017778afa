/**
 * The bytes of a source read in chunks and not yet taken as records, for
 * import's reader (export.ts readRecords): one buffer that grows by doubling,
 * so that a record that comes in many chunks (a 40 MB value in 64 KiB reads,
 * or 1 byte at a time) costs time linear in its size. Joining the held bytes
 * to each new chunk (Buffer.concat per chunk) was quadratic: one 40 MB value
 * took 93 to 167 s to import as ndjson, 39 to 70 s as msgpack (4.5 s now).
 *
 * Every chunk is copied in as it comes: a source may hand the same buffer
 * again with the next bytes (a read loop into one scratch buffer), and what
 * is kept past the next read (a record not yet whole; a msgpack value's
 * Buffers, which unpack gives as views of the frame, in a batch not yet
 * written) must not change under the reader. Bytes once taken are never
 * written again: appends go past them, or into a new buffer.
 */
export class SourceBytes {
  /** A new buffer is never smaller than this: chunks of a few bytes do not each allocate one. */
  private static readonly STORE_BYTES_MIN = 64 * 1024
  private store: Buffer = Buffer.alloc(0)
  /** The bytes held are store[start, end). */
  private start = 0
  private end = 0

  get length(): number {
    return this.end - this.start
  }

  /** Copies `chunk` in after the bytes held. */
  append(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.store.length) {
      const held = this.end - this.start
      // Twice what is needed: a record growing chunk by chunk is copied O(1) times per byte overall.
      const next = Buffer.allocUnsafe(Math.max(SourceBytes.STORE_BYTES_MIN, 2 * (held + chunk.length)))
      this.store.copy(next, 0, this.start, this.end)
      this.store = next
      this.start = 0
      this.end = held
    }
    this.store.set(chunk, this.end)
    this.end += chunk.length
  }

  /** The byte at `i` of those held. */
  at(i: number): number | undefined {
    return i < this.length ? this.store[this.start + i] : undefined
  }

  /** The u32 (big-endian) at `i` of those held; `i + 4` must be at most `length`. */
  readUInt32BE(i: number): number {
    return this.store.readUInt32BE(this.start + i)
  }

  /** Where `byte` first is in the bytes held, searching from `from` (the caller's: bytes before it were searched); -1 when not held. */
  indexOf(byte: number, from: number): number {
    return this.store.subarray(this.start, this.end).indexOf(byte, from)
  }

  /** Removes the first `n` bytes held and returns them: a view that stays as it is (nothing is written over taken bytes). */
  take(n: number): Buffer {
    const taken = this.store.subarray(this.start, this.start + n)
    this.start += n
    return taken
  }
}
