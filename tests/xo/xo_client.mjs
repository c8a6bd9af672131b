// Xen Orchestra's own XenAPI client (npm xen-api) against `xsguard simulate`: connect, read the
// pool from its event-fed cache, start VMs with VM.start and Async.VM.start_on, and wait for
// xsguard's refusal message to reach that cache. Prints one JSON line of what it saw.
// usage: node xo_client.mjs URL TRANSPORT(auto|json-rpc|xml-rpc)
import { createClient } from 'xen-api'

const [url, transport] = process.argv.slice(2)
const xapi = createClient({ url, transport, auth: { user: 'root', password: 'any' }, debounce: 50 })

const objects = () => Object.values(xapi.objects.all)
const named = (type, name) => objects().find(o => o.$type === type && o.name_label === name)

async function waitFor(what, predicate, seconds = 20) {
  const deadline = Date.now() + seconds * 1e3
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function failure(promise) {
  try {
    await promise
  } catch (error) {
    return { code: error.code, params: error.params }
  }
  return null
}

const seen = {}
try {
  await xapi.connect()
  await xapi.objectsFetched
  seen.hosts = objects().filter(o => o.$type === 'host').map(h => h.name_label).sort()
  seen.vms = objects()
    .filter(o => o.$type === 'VM' && !o.is_control_domain)
    .map(v => v.name_label)
    .sort()
  const host = named('host', 'xs-a')

  await xapi.call('VM.start', named('VM', 'small').$ref, false, false)
  await xapi.callAsync('VM.start_on', named('VM', 'placed').$ref, host.$ref, false, false)
  seen.refused = await failure(xapi.callAsync('VM.start_on', named('VM', 'huge').$ref, host.$ref, false, false))

  // what the cache shows comes only from events
  seen.small = (await waitFor('small running', () => named('VM', 'small')?.power_state === 'Running' && named('VM', 'small'))).resident_on === host.$ref
  seen.placed = (await waitFor('placed running', () => named('VM', 'placed')?.power_state === 'Running' && named('VM', 'placed'))).resident_on === host.$ref
  const message = await waitFor('the refusal message', () =>
    objects().find(o => o.$type === 'message' && o.name === 'XSGUARD_START_REFUSED')
  )
  seen.message = { obj_uuid: message.obj_uuid, huge: named('VM', 'huge').uuid, body: message.body }
  seen.tasks_left = objects().filter(o => o.$type === 'task').length
} catch (error) {
  seen.error = String(error?.stack ?? error)
}
process.stdout.write(JSON.stringify(seen) + '\n')
await xapi.disconnect()
process.exit(0)
