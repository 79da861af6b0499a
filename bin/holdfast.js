#!/usr/bin/env node
// Kept to syntax every Node can parse, so an old Node gets a clear message, not a SyntaxError.
var major = Number(process.versions.node.split('.')[0])
if (!(major >= 24)) {
  process.stderr.write('holdfast: needs Node.js 24 or newer, this is ' + process.version + ' (run it through `npx holdfast` or `npm run` in the project, which use the Node 24 that `npm ci` installs)\n')
  process.exit(1)
}
// node:sqlite announces itself as experimental on every start; the daemons' logs do not need that.
var emitWarning = process.emitWarning
process.emitWarning = function (warning, type) {
  var name = typeof type === 'string' ? type : (type && type.type)
  if (name === 'ExperimentalWarning' && String(warning).indexOf('SQLite') >= 0) return
  return emitWarning.apply(process, arguments)
}
import('../dist/src/cli/main.js').then(function (m) { return m.main(process.argv.slice(2)) }).then(function (code) {
  process.exitCode = code
}, function (err) {
  process.stderr.write('holdfast: ' + (err && err.stack ? err.stack : String(err)) + '\n')
  process.exitCode = 1
})
