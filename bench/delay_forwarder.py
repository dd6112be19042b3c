#!/usr/bin/env python3
"""A TCP forwarder that delays every byte by a fixed time each way.

`bench/reconcile.sh` uses it, with a veth pair shaped by `tc tbf`, to put a
database "across a network" on one machine when the kernel has no `netem`
qdisc (the usual way to add delay): the link's rate comes from `tbf`, its
latency from here. Data is forwarded in order, each chunk held until `delay`
after it arrived, so that throughput is not capped by the delay: it models
a long pipe, not a stop-and-wait one.

    delay_forwarder.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

It prints "ready" once listening, and runs until killed.
"""

import asyncio
import sys
import time


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it came."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    delivering = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await delivering
    except (ConnectionError, OSError):
        pass


async def serve(listen_host, listen_port, target_host, target_port, delay):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), timeout=10
            )
        except (OSError, asyncio.TimeoutError) as error:
            print(f"cannot reach {target_host}:{target_port}: {error}", file=sys.stderr)
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay),
            pump(server_reader, client_writer, delay),
        )
        for writer in (client_writer, server_writer):
            writer.close()

    server = await asyncio.start_server(handle, listen_host, listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    listen_host, listen_port, target_host, target_port, delay_ms = sys.argv[1:]
    asyncio.run(
        serve(listen_host, int(listen_port), target_host, int(target_port), float(delay_ms) / 1000)
    )


if __name__ == "__main__":
    main()
