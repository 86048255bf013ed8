// Runs one execution with aws-local-stepfunctions' library API and prints its output as JSON
// (its `local-sfn` CLI prints the result with util.inspect, which elides long arrays, so the
// output could not be checked).  usage: node run.cjs DEFINITION.json INPUT.json
'use strict';
const fs = require('fs');
const { StateMachine } = require('aws-local-stepfunctions');

async function main() {
  const [defPath, inputPath] = process.argv.slice(2);
  const definition = JSON.parse(fs.readFileSync(defPath, 'utf8'));
  const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
  const machine = new StateMachine(definition);
  const result = await machine.run(input).result;
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write(`run.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
