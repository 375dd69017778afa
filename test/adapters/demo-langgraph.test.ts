/**
 * `npm run demo:langgraph` tells its story and checks it: a LangGraph graph
 * SIGKILLed once a checkpoint is durable resumes from that checkpoint, nothing
 * lost, nothing redone. Runs the demo from source through tsx.
 */
import t from 'tap'
import { runDemo } from '../support/run-demo.js'

t.test('the LangGraph demo resumes after SIGKILL with nothing lost', async (t) => {
  const { code, stdout } = await runDemo('demo-langgraph')
  t.match(stdout, /graph process killed by SIGKILL/, 'the first run was killed')
  t.match(stdout, /resumed from step (\d+): nothing lost/, 'the second run resumed from the last durable checkpoint')
  t.match(stdout, /every step exactly once, in order: yes/, 'the final state holds every step once')
  t.equal(code, 0, 'the demo exits 0')
})
