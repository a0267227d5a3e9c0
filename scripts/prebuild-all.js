#!/usr/bin/env node
'use strict'
// Builds every prebuild this package ships into prebuilds/, from one
// Linux x64 glibc machine (`npm pack` runs it through `prepack`):
//
//   prebuilds/linux-x64/fastify-zero-copy.glibc.node    the host's gcc
//   prebuilds/linux-arm64/fastify-zero-copy.glibc.node  aarch64-linux-gnu-gcc
//   prebuilds/linux-x64/fastify-zero-copy.musl.node     musl-gcc
//   prebuilds/linux-arm64/fastify-zero-copy.musl.node   aarch64-linux-gnu-gcc
//                                                       with musl-dev:arm64
//
// These are the names node-gyp-build looks for: prebuilds/<platform>-<arch>/
// then a file whose tags match (`glibc` / `musl`, from LIBC or
// /etc/alpine-release; `napi` builds carry no abi tag).
//
// A target whose toolchain is missing is skipped with a line saying what to
// install, so `npm pack` (and `npm test`, which packs) still works on a
// fresh machine; with CI=true (or PREBUILD_ALL_STRICT=1) a skipped target is
// an error. A toolchain that is present but fails is always an error.
//
// Every binary is checked after the build (readelf): the right ELF machine;
// glibc builds need no symbol version newer than GLIBC_MAX; musl builds
// need only musl's libc.so, no GLIBC_ version, every libc symbol they
// import is exported by that architecture's musl libc.so, and musl's own
// loader (`libc.so --list`, arm64 under qemu-user) resolves everything but
// Node's napi_/uv_ symbols. No musl Node is on npm: they are never loaded
// into a Node process here.
//
// Each target is built in a temporary copy of the native sources, so the
// work tree's build/ (what the tests load) is never replaced by a
// cross-compiled binary.
//
// Usage: node scripts/prebuild-all.js [--only ID[,ID]] [--out DIR]
//   env: CI / PREBUILD_ALL_STRICT, MUSL_ARM64_ROOT (a folder holding
//   musl-dev:arm64 and musl:arm64, as installed or as `dpkg -x` left them;
//   default /)

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const NAME = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).name

/** The newest glibc symbol version a glibc prebuild may need (README: glibc >= 2.34). */
const GLIBC_MAX = '2.34'

const ELF_MACHINE = { x64: 62, arm64: 183 }

const exists = (p) => fs.existsSync(p)

/** Absolute path of `cmd` on PATH, or null. */
function which (cmd) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue
    const candidate = path.join(dir, cmd)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {}
  }
  return null
}

const hostIsGlibcX64 = () => process.platform === 'linux' && process.arch === 'x64' && !exists('/etc/alpine-release')

function muslArm64Root () {
  return path.resolve(process.env.MUSL_ARM64_ROOT || '/')
}

/**
 * The targets, each with `missing()`: null when this machine can build it,
 * else what is lacking (and which Debian packages bring it).
 */
const TARGETS = [
  {
    id: 'linux-x64-glibc',
    arch: 'x64',
    libc: 'glibc',
    missing: () => (hostIsGlibcX64() ? null : `the host is ${process.platform}-${process.arch}${exists('/etc/alpine-release') ? ' musl' : ''}, not linux-x64 glibc`)
  },
  {
    id: 'linux-arm64-glibc',
    arch: 'arm64',
    libc: 'glibc',
    missing: () => {
      if (!hostIsGlibcX64()) return 'cross builds run on a linux-x64 glibc host only'
      if (!which('aarch64-linux-gnu-gcc')) return 'no aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)'
      if (!exists('/usr/aarch64-linux-gnu/include/stdio.h')) return 'no arm64 glibc headers (apt-get install libc6-dev-arm64-cross)'
      return null
    }
  },
  {
    id: 'linux-x64-musl',
    arch: 'x64',
    libc: 'musl',
    missing: () => {
      if (!hostIsGlibcX64()) return 'cross builds run on a linux-x64 glibc host only'
      if (!which('musl-gcc')) return 'no musl-gcc (apt-get install musl-tools)'
      if (!exists('/usr/include/linux/fs.h') || !exists('/usr/include/x86_64-linux-gnu/asm')) return 'no kernel headers (apt-get install linux-libc-dev)'
      return null
    }
  },
  {
    id: 'linux-arm64-musl',
    arch: 'arm64',
    libc: 'musl',
    missing: () => {
      if (!hostIsGlibcX64()) return 'cross builds run on a linux-x64 glibc host only'
      if (!which('aarch64-linux-gnu-gcc')) return 'no aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)'
      if (!exists('/usr/aarch64-linux-gnu/include/linux/fs.h')) return 'no arm64 kernel headers (apt-get install linux-libc-dev-arm64-cross)'
      const root = muslArm64Root()
      if (!exists(path.join(root, 'usr/lib/aarch64-linux-musl/musl-gcc.specs')) || muslArm64Libc(root) === null) {
        return `no musl for arm64 under ${root} (dpkg --add-architecture arm64; apt-get update; apt-get install musl-dev:arm64; or set MUSL_ARM64_ROOT to a folder where musl-dev:arm64 and musl:arm64 were unpacked)`
      }
      return null
    }
  }
]
for (const t of TARGETS) t.file = path.join('prebuilds', `linux-${t.arch}`, `${NAME}.${t.libc}.node`)

/** musl:arm64's libc.so: in lib/ as the package ships it, usr/lib/ once /usr is merged. */
function muslArm64Libc (root) {
  for (const dir of ['lib/aarch64-linux-musl', 'usr/lib/aarch64-linux-musl']) {
    if (exists(path.join(root, dir, 'libc.so'))) return path.join(root, dir, 'libc.so')
  }
  return null
}

const MUSL_LIBC = {
  x64: () => '/usr/lib/x86_64-linux-musl/libc.so',
  arm64: () => muslArm64Libc(muslArm64Root())
}

/**
 * A folder holding only the kernel's uapi headers (linux/, asm/,
 * asm-generic/): musl-gcc searches musl's headers and nothing else, and the
 * addon needs <linux/openat2.h>, <linux/sock_diag.h> and the like.
 */
function kernelHeaders (work, arch) {
  const dir = path.join(work, 'kernel-headers')
  fs.mkdirSync(dir)
  const [base, asm] = arch === 'x64'
    ? ['/usr/include', '/usr/include/x86_64-linux-gnu/asm']
    : ['/usr/aarch64-linux-gnu/include', '/usr/aarch64-linux-gnu/include/asm']
  fs.symlinkSync(path.join(base, 'linux'), path.join(dir, 'linux'))
  fs.symlinkSync(path.join(base, 'asm-generic'), path.join(dir, 'asm-generic'))
  fs.symlinkSync(asm, path.join(dir, 'asm'))
  return dir
}

/**
 * musl-dev:arm64's own gcc specs (the ones its musl-gcc uses), with its
 * /usr paths moved under MUSL_ARM64_ROOT, for the cross gcc.
 */
function muslArm64Specs (work) {
  const root = muslArm64Root()
  const lib = path.join(root, 'usr/lib/aarch64-linux-musl')
  let specs = fs.readFileSync(path.join(lib, 'musl-gcc.specs'), 'utf8')
  specs = specs.split('/usr/include/aarch64-linux-musl').join(path.join(root, 'usr/include/aarch64-linux-musl'))
  // libc.so's folder first: ld takes the first folder with either libc.so
  // or libc.a, and libc.a (usr/lib) linked into the addon would be a static
  // copy of musl inside a shared object.
  specs = specs.split('-L/usr/lib/aarch64-linux-musl').join(`-L${path.dirname(muslArm64Libc(root))} -L${lib}`)
  specs = specs.split(' /usr/lib/aarch64-linux-musl/').join(` ${lib}/`)
  const file = path.join(work, 'musl-arm64.specs')
  fs.writeFileSync(file, specs)
  return file
}

/** Compiler, flags and prebuildify arguments for a target. */
function toolchain (target, work) {
  const args = ['--napi', '--strip', '--tag-libc', '--libc', target.libc, '--arch', target.arch]
  const env = {}
  if (target.arch === 'arm64') args.push('--strip-bin', 'aarch64-linux-gnu-strip')
  let cc = null
  let cflags = ''
  if (target.id === 'linux-arm64-glibc') {
    cc = 'aarch64-linux-gnu-gcc'
  } else if (target.id === 'linux-x64-musl') {
    cc = 'musl-gcc'
    cflags = `-isystem ${kernelHeaders(work, 'x64')}`
  } else if (target.id === 'linux-arm64-musl') {
    cc = `aarch64-linux-gnu-gcc -specs ${muslArm64Specs(work)}`
    // GCC's default -moutline-atomics calls libgcc's __aarch64_* helpers,
    // whose set-up reads __getauxval: exported by glibc, not by musl, so
    // the addon would fail to load on Alpine ("symbol not found").
    cflags = `-isystem ${kernelHeaders(work, 'arm64')} -mno-outline-atomics`
  }
  if (cc !== null) Object.assign(env, { CC: cc, CXX: cc, LINK: cc })
  if (cflags) env.CFLAGS = cflags
  return { args, env }
}

/**
 * node-gyp's headers: npm passes nodedir from .npmrc to its scripts, but a
 * direct `node scripts/prebuild-all.js` has no npm around it. A Node
 * installed with its headers (Debian, NodeSource) has them next to the
 * binary; with neither, node-gyp downloads them.
 */
function nodedirEnv () {
  if (process.env.npm_config_nodedir) return {}
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  return exists(path.join(prefix, 'include', 'node', 'node_api.h')) ? { npm_config_nodedir: prefix } : {}
}

function run (cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts })
  if (r.error) throw r.error
  return r
}

/** Builds one target into `outDir`/prebuilds/…; throws on failure. */
function buildTarget (target, outDir = ROOT, { quiet = false } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `zc-prebuild-${target.id}-`))
  try {
    const src = path.join(work, 'src')
    fs.mkdirSync(src)
    for (const f of ['binding.gyp', 'package.json', 'native']) fs.cpSync(path.join(ROOT, f), path.join(src, f), { recursive: true })
    const { args, env } = toolchain(target, work)
    const prebuildify = require.resolve('prebuildify/bin.js', { paths: [ROOT] })
    const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] })
    const r = run(process.execPath, [prebuildify, ...args, '--node-gyp', nodeGyp, '--cwd', src, '--out', path.resolve(outDir)], {
      env: { ...process.env, ...nodedirEnv(), ...env },
      stdio: quiet ? 'pipe' : ['ignore', 'inherit', 'inherit']
    })
    if (r.status !== 0) {
      throw new Error(`prebuildify for ${target.id} exited ${r.status}${quiet ? `\n${r.stdout}\n${r.stderr}` : ''}`)
    }
    const file = path.join(outDir, target.file)
    if (!exists(file)) throw new Error(`prebuildify for ${target.id} made no ${target.file}`)
    return file
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

/** readelf's dynamic section and dynamic symbols of `file`. */
function dynamicInfo (file) {
  const d = run('readelf', ['-d', '-W', file])
  const s = run('readelf', ['--dyn-syms', '-W', file])
  if (d.status !== 0 || s.status !== 0) throw new Error(`readelf ${file}: ${d.stderr}${s.stderr}`)
  const needed = [...d.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  const symbols = []
  for (const line of s.stdout.split('\n')) {
    // Num: Value Size Type Bind Vis Ndx Name[@version]
    const f = line.trim().split(/\s+/)
    if (f.length < 8 || !/^\d+:$/.test(f[0])) continue
    const [name, version = null] = f[7].split(/@+/)
    symbols.push({ name, version, bind: f[4], defined: f[6] !== 'UND' })
  }
  return { needed, symbols }
}

const compareVersions = (a, b) => {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return 0
}

/**
 * Checks a built prebuild; returns a one-line summary, throws with every
 * problem found.
 */
function checkBinary (target, file) {
  const problems = []
  const header = fs.readFileSync(file).subarray(0, 20)
  const machine = header.readUInt16LE(18)
  if (header.toString('latin1', 0, 4) !== '\x7fELF' || header[4] !== 2) problems.push('not a 64-bit ELF file')
  if (machine !== ELF_MACHINE[target.arch]) problems.push(`ELF machine ${machine}, expected ${ELF_MACHINE[target.arch]} (${target.arch})`)

  const { needed, symbols } = dynamicInfo(file)
  const glibcVersions = [...new Set(symbols.map((s) => /^GLIBC_([\d.]+)$/.exec(s.version ?? '')?.[1]).filter(Boolean))].sort(compareVersions)
  const imported = symbols.filter((s) => !s.defined && s.bind !== 'WEAK' && !/^(napi_|uv_|node_api_)/.test(s.name))
  let summary
  if (target.libc === 'glibc') {
    const max = glibcVersions.at(-1) ?? null
    if (max === null || !needed.includes('libc.so.6')) problems.push('not linked against glibc\'s libc.so.6')
    else if (compareVersions(max, GLIBC_MAX) > 0) problems.push(`needs GLIBC_${max}, newer than GLIBC_${GLIBC_MAX}`)
    summary = `needs GLIBC_${max} at most; NEEDED ${needed.join(' ')}`
  } else {
    if (glibcVersions.length > 0) problems.push(`has glibc symbol versions: ${glibcVersions.map((v) => `GLIBC_${v}`).join(' ')}`)
    const notMusl = needed.filter((n) => n !== 'libc.so')
    if (notMusl.length > 0) problems.push(`NEEDED ${notMusl.join(' ')}: musl's only library is libc.so`)
    if (!needed.includes('libc.so')) problems.push('does not link musl\'s libc.so (libc linked in statically?)')
    const libc = MUSL_LIBC[target.arch]()
    if (libc === null || !exists(libc)) {
      problems.push(`cannot check imports: no musl libc.so for ${target.arch}`)
    } else {
      const exported = new Set(dynamicInfo(libc).symbols.filter((s) => s.defined).map((s) => s.name))
      const absent = imported.filter((s) => !exported.has(s.name)).map((s) => s.name)
      if (absent.length > 0) problems.push(`imports ${absent.join(' ')}, which musl's libc.so does not export`)
    }
    summary = `NEEDED ${needed.join(' ')}; ${imported.length} libc symbols, all in musl's libc.so`
    if (libc !== null && exists(libc)) {
      const loaded = muslLoaderCheck(target, file, libc)
      if (loaded.problems.length > 0) problems.push(...loaded.problems)
      summary += `; ${loaded.summary}`
    }
  }
  if (problems.length > 0) throw new Error(`${target.file}: ${problems.join('; ')}`)
  return `${target.arch}, ${summary}`
}

/**
 * musl's own dynamic loader (its libc.so) in ldd mode loads and relocates
 * the addon: every symbol it cannot resolve is printed. Only Node's own
 * (napi_*, uv_*) may be among them. arm64 runs it under qemu-user when
 * there is one.
 */
function muslLoaderCheck (target, file, libc) {
  let cmd = libc
  let args = ['--list', file]
  if (target.arch !== process.arch) {
    const qemu = process.env.QEMU_AARCH64 || which('qemu-aarch64') || which('qemu-aarch64-static')
    if (target.arch !== 'arm64' || qemu === null) return { problems: [], summary: 'musl loader not run (no qemu-aarch64)' }
    cmd = qemu
    args = [libc, ...args]
  }
  const r = run(cmd, args)
  const out = `${r.stdout}${r.stderr}`
  const unresolved = [...out.matchAll(/Error relocating [^:]+: ([^:]+): symbol not found/g)].map((m) => m[1])
  const other = out.split('\n').filter((l) => /^Error /.test(l) && !/symbol not found/.test(l))
  const foreign = unresolved.filter((name) => !/^(napi_|uv_|node_api_)/.test(name))
  const problems = []
  if (!/libc\.so => /.test(out)) problems.push(`musl's loader did not list libc.so: ${out.slice(0, 500)}`)
  if (foreign.length > 0) problems.push(`musl's loader cannot resolve ${foreign.join(' ')}`)
  if (other.length > 0) problems.push(`musl's loader: ${other.join('; ')}`)
  return { problems, summary: `musl's loader resolves all but ${unresolved.length} napi_/uv_ symbols (Node's)` }
}

const strictFromEnv = () => {
  const s = process.env.PREBUILD_ALL_STRICT
  if (s !== undefined && s !== '') return s === '1' || s === 'true'
  return process.env.CI === 'true' || process.env.CI === '1'
}

function main (argv) {
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null
  const outDir = argv.includes('--out') ? path.resolve(argv[argv.indexOf('--out') + 1]) : ROOT
  const strict = strictFromEnv()
  const targets = TARGETS.filter((t) => only === null || only.includes(t.id))
  if (only !== null && targets.length !== only.length) throw new Error(`unknown target in --only ${only.join(',')}; known: ${TARGETS.map((t) => t.id).join(', ')}`)

  // Only what this run builds ends up in prebuilds/: a binary left from an
  // older run (other sources, a toolchain since removed) is never packed.
  if (only === null) fs.rmSync(path.join(outDir, 'prebuilds'), { recursive: true, force: true })

  const built = []
  const skipped = []
  for (const target of targets) {
    const why = target.missing()
    if (why !== null) {
      skipped.push(`${target.file}: ${why}`)
      continue
    }
    const started = Date.now()
    console.log(`prebuild-all: building ${target.id}`)
    const file = buildTarget(target, outDir, { quiet: true })
    built.push(`${target.file} (${fs.statSync(file).size} bytes, ${Date.now() - started} ms): ${checkBinary(target, file)}`)
  }
  for (const line of built) console.log(`prebuild-all: built   ${line}`)
  for (const line of skipped) console.log(`prebuild-all: SKIPPED ${line}`)
  if (skipped.length > 0) {
    if (strict) {
      console.error(`prebuild-all: ${skipped.length} target(s) skipped, an error with CI=true or PREBUILD_ALL_STRICT=1`)
      return 1
    }
    console.log(`prebuild-all: the package will not carry ${skipped.length} prebuild(s); users there compile at install or get the write-based fallback`)
  }
  return 0
}

module.exports = { TARGETS, GLIBC_MAX, buildTarget, checkBinary, strictFromEnv, which }

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2))
  } catch (err) {
    console.error(`prebuild-all: ${err.message}`)
    process.exitCode = 1
  }
}
