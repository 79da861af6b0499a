/**
 * Sample trees to back up and a strict comparison of two trees: type, bytes, permission bits,
 * mtime (within 1 µs, the resolution Node's utimes gives), symlink targets, empty directories, raw-byte names.
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'

/** Deterministic pseudo-random bytes (so dedup across trees is testable). */
export function seededBytes (seed: string, length: number): Buffer {
  const out = Buffer.alloc(length)
  let block = createHash('sha256').update(seed).digest()
  for (let off = 0; off < length; off += block.length) {
    block.copy(out, off, 0, Math.min(block.length, length - off))
    block = createHash('sha256').update(block).digest()
  }
  return out
}

/** A small tree with every common kind of entry. */
export function makeSampleTree (root: string, flavour: string, options: { bigFileBytes?: number } = {}): void {
  mkdirSync(join(root, 'docs', 'reports'), { recursive: true })
  mkdirSync(join(root, 'empty-dir'), { recursive: true })
  mkdirSync(join(root, 'deep', 'a', 'b', 'c', 'd'), { recursive: true })
  writeFileSync(join(root, 'README.txt'), `Files of ${flavour}.\n`)
  writeFileSync(join(root, 'docs', 'notes.md'), `# Notes of ${flavour}\n\n` + 'line of text\n'.repeat(500))
  writeFileSync(join(root, 'docs', 'reports', 'q3.csv'), Array.from({ length: 2000 }, (_, i) => `${i},${flavour},${i * 7}`).join('\n'))
  writeFileSync(join(root, 'deep', 'a', 'b', 'c', 'd', 'leaf.bin'), randomBytes(5000))
  writeFileSync(join(root, 'empty.txt'), '')
  // the same bytes on every endpoint: stored once
  writeFileSync(join(root, 'shared-installer.bin'), seededBytes('shared', 3 * 1024 * 1024 + 123))
  writeFileSync(join(root, `big-${flavour}.bin`), seededBytes(`big-${flavour}`, options.bigFileBytes ?? 6 * 1024 * 1024))
  writeFileSync(join(root, 'script.sh'), '#!/bin/sh\necho hi\n')
  chmodSync(join(root, 'script.sh'), 0o750)
  symlinkSync('docs/notes.md', join(root, 'link-to-notes'))
  symlinkSync('../../outside/target', join(root, 'dangling-link'))
  // a name that is not UTF-8
  writeFileSync(Buffer.concat([Buffer.from(join(root, 'docs') + '/'), Buffer.from([0x6e, 0xe9, 0x2e, 0x74, 0x78, 0x74])]), 'latin-1 name\n')
  utimesSync(join(root, 'README.txt'), new Date('2020-01-02T03:04:05.678Z'), new Date('2020-01-02T03:04:05.678Z'))
}

export interface TreeDifference { path: string, what: string }

/** Compares two trees; returns every difference (empty when they are the same). */
export function compareTrees (a: string, b: string, options: { skip?: (relPath: string) => boolean } = {}): TreeDifference[] {
  const diffs: TreeDifference[] = []
  walk(Buffer.from(a), Buffer.from(b), Buffer.alloc(0), diffs)
  return options.skip === undefined ? diffs : diffs.filter(d => !(options.skip as (p: string) => boolean)(d.path))
}

function walk (a: Buffer, b: Buffer, rel: Buffer, diffs: TreeDifference[]): void {
  const sub = (root: Buffer): Buffer => rel.length === 0 ? root : Buffer.concat([root, Buffer.from('/'), rel])
  const namesA = new Set(readdirSync(sub(a), { encoding: 'buffer' }).map(n => n.toString('latin1')))
  const namesB = new Set(readdirSync(sub(b), { encoding: 'buffer' }).map(n => n.toString('latin1')))
  for (const n of namesA) if (!namesB.has(n)) diffs.push({ path: show(rel, n), what: 'missing in restore' })
  for (const n of namesB) if (!namesA.has(n)) diffs.push({ path: show(rel, n), what: 'extra in restore' })
  for (const n of namesA) {
    if (!namesB.has(n)) continue
    const childRel = rel.length === 0 ? Buffer.from(n, 'latin1') : Buffer.concat([rel, Buffer.from('/'), Buffer.from(n, 'latin1')])
    const pa = Buffer.concat([a, Buffer.from('/'), childRel])
    const pb = Buffer.concat([b, Buffer.from('/'), childRel])
    const sa = lstatSync(pa, { bigint: true })
    const sb = lstatSync(pb, { bigint: true })
    const p = show(rel, n)
    if ((sa.mode & 0o170000n) !== (sb.mode & 0o170000n)) { diffs.push({ path: p, what: 'type differs' }); continue }
    if (sa.isSymbolicLink()) {
      if (!readlinkSync(pa, { encoding: 'buffer' }).equals(readlinkSync(pb, { encoding: 'buffer' }))) diffs.push({ path: p, what: 'symlink target differs' })
      continue
    }
    if ((sa.mode & 0o7777n) !== (sb.mode & 0o7777n)) diffs.push({ path: p, what: `mode ${(sa.mode & 0o7777n).toString(8)} vs ${(sb.mode & 0o7777n).toString(8)}` })
    // Node's utimes takes seconds as a double: about 0.24 µs resolution at today's epoch.
    const skew = sa.mtimeNs > sb.mtimeNs ? sa.mtimeNs - sb.mtimeNs : sb.mtimeNs - sa.mtimeNs
    if (skew >= 1000n) diffs.push({ path: p, what: `mtime ${sa.mtimeNs} vs ${sb.mtimeNs}` })
    if (sa.isDirectory()) { walk(a, b, childRel, diffs); continue }
    if (sa.isFile() && !readFileSync(pa).equals(readFileSync(pb))) diffs.push({ path: p, what: 'contents differ' })
  }
}

function show (rel: Buffer, name: string): string {
  return (rel.length === 0 ? '' : rel.toString() + '/') + Buffer.from(name, 'latin1').toString()
}
