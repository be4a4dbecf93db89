// The case suite against the live server (serve() in process, over gRPC): what the decision code
// answers is what Envoy gets on the wire.

import { callCheck, checkClient } from '../support/grpc.js'
import { startServer } from '../support/server.js'
import { answerOf } from './answer.js'
import { CASES } from './cases.js'
import { runCases } from './suite.js'

runCases(async (policy) => {
  const running = await startServer(policy.file, { env: policy.env })
  const client = checkClient(running.grpcPort)
  return {
    decide: async (request) => answerOf(await callCheck(client, request.bytes)),
    async close() {
      client.close()
      await running.stop()
    },
  }
}, CASES)
