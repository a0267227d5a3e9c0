// Strong validators (RFC 9110 §8.8.3). Both kinds are made only of what
// every machine holding the same file agrees on, so replicas behind a load
// balancer or a CDN (copies made with their mtimes: image layers, rsync -a,
// cp -a) send the same tag, and a tag from one revalidates at another.
//
// statEtag: size and mtime (to the microsecond), as nginx's "mtime-size".
// Strong because a response carries the bytes of the version it describes
// (sent from the fd it fstat-ed, under a read lease when the kernel grants
// one) and every write changes the mtime. Its blind spot is nginx's too: a
// replacement with the same size and mtime (a rename onto the path of a file
// copied with its times) keeps the tag. No inode or device number: those
// differ between copies and would make replicas disagree.
//
// digestEtag: the bytes themselves (lib/digest.ts), for deploys that touch
// mtimes without changing content, or copies that do not keep them.

/** A pre-compressed sibling (.br, .gz...) is another representation of the same URL: its tag must differ even where size and mtime match. */
export function statEtag (stat: { size: number, mtimeMs: number }, coding?: string): string {
  const mtimeMicros = Math.round(stat.mtimeMs * 1000)
  const suffix = coding === undefined ? '' : `-${coding}`
  return `"${mtimeMicros.toString(36)}-${stat.size.toString(36)}${suffix}"`
}

/** digest: base64url, as lib/digest.ts makes it (its own bytes already differ per coding). */
export function digestEtag (digest: string): string {
  return `"${digest}"`
}
