"""A TLS front for the embedded broker, which speaks plaintext only (Tansu 0.6's ``--cert`` did not
give a TLS listener here): it terminates TLS on a loopback port, requires a client certificate
signed by the test CA (mutual TLS), and forwards the bytes to the broker, which advertises the
proxy's port so that every connection a client makes goes through it. The Kafka protocol on both
sides is the real broker's; the proxy only adds the TLS a production cluster requires.
"""

from __future__ import annotations

import asyncio
import ssl
import threading


class TlsProxy:
    def __init__(self, server_context: ssl.SSLContext, port: int, target_port: int) -> None:
        self.ctx, self.port, self.target = server_context, port, target_port
        self.sessions = 0  # connections whose TLS handshake (client certificate included) succeeded
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="tls-proxy")
        self.server: asyncio.base_events.Server | None = None

    def start(self) -> TlsProxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", self.port, ssl=self.ctx), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def close():
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _session(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.sessions += 1
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_w.close()
            return

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(client_r, broker_w), pump(broker_r, client_w))
