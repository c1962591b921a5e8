# Prints one container's captured lines, in order, from the LOGS stream.
#   python3 read_container.py nats://127.0.0.1:24221 <container_id>
import asyncio, json, sys
import nats

async def main(url, cid):
    nc = await nats.connect(url)
    js = nc.jetstream()
    # An ephemeral ordered consumer on the container's subjects, from the first message.
    sub = await js.subscribe(f"logs.{cid}.>", ordered_consumer=True, deliver_policy="all")
    try:
        while True:
            msg = await sub.next_msg(timeout=2)
            rec = json.loads(msg.data)
            print(rec["ts"], rec["stream"], rec["pos"], rec["message"])
    except nats.errors.TimeoutError:
        pass
    await nc.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
