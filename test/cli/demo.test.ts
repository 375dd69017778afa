/**
 * `npm run demo` is the README's main-job command: an agent writes through a
 * backend outage, is killed with SIGKILL, `memwal replay` and `memwal fsck`
 * recover and check, and every acknowledged memory is read back from its
 * namespace with its value and version. Runs the demo from source through
 * tsx and checks what it says and its exit code (it read back 0 of every
 * memory, and said FAILED, while nothing ran it).
 */
import t from 'tap'
import { runDemo } from '../support/run-demo.js'

t.test('npm run demo: every acknowledged memory reads back after the outage, the kill and the replay', async (t) => {
  const { code, stdout } = await runDemo('demo')
  const acked = /The agent had (\d+) memories acknowledged/.exec(stdout)
  t.ok(acked && Number(acked[1]) > 0, `the agent had memories acknowledged while its backend was down: ${acked?.[1]}`)
  const back = /(\d+) of (\d+) acknowledged memories read back; (\d+) missing/.exec(stdout)
  t.ok(back, 'the demo reports what it read back')
  t.equal(back?.[1], back?.[2], 'every acknowledged memory read back')
  t.equal(back?.[3], '0', 'none missing')
  t.match(stdout, /clean: the log, the backend and the index agree/, 'fsck found the directory clean')
  t.match(stdout, /Result: no acknowledged write was lost/, 'the demo says so')
  t.equal(code, 0, 'and exits 0')
})
