// A strong validator (RFC 9110 §8.8.1) built from the fstat(2) of the open
// file descriptor that is about to be sent.
//
// Strong is justified because the plugin guarantees every response carries
// the bytes of exactly one version of the file (it sends from the fd it
// fstat-ed, under a read lease), and any rewrite of the file changes its
// mtime, while a replacement by rename changes the inode. Microsecond mtime
// keeps two writes within the same millisecond distinguishable where the
// filesystem records them.
export function strongEtag (stat: { ino: number, size: number, mtimeMs: number }): string {
  const mtimeMicros = Math.round(stat.mtimeMs * 1000)
  return `"${stat.ino.toString(36)}-${stat.size.toString(36)}-${mtimeMicros.toString(36)}"`
}
