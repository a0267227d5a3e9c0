// A strong validator (RFC 9110 §8.8.1) built from the fstat(2) of the open
// file descriptor that is about to be sent.
//
// Strong because a response carries the bytes of the version it describes:
// it sends from the fd it fstat-ed, under a read lease when the kernel
// grants one (without a lease, a concurrent writer can still change bytes
// mid-send; see README, Limitations), and any rewrite of the file changes
// its mtime, while a replacement by rename changes the inode. Microsecond mtime
// keeps two writes within the same millisecond distinguishable where the
// filesystem records them.
export function strongEtag (stat: { ino: number, size: number, mtimeMs: number }): string {
  const mtimeMicros = Math.round(stat.mtimeMs * 1000)
  return `"${stat.ino.toString(36)}-${stat.size.toString(36)}-${mtimeMicros.toString(36)}"`
}
