"""A loopback stand-in for TWS / IB Gateway that speaks enough of the TWS API socket protocol for
ib_async's real `IB.connectAsync`, `reqMktDepth` and `reqTickByTickData` to run against it.

Protocol (TWS API v100+): the client opens with b"API\\0" and a length-prefixed version range; every
later message is a 4-byte big-endian length and NUL-terminated text fields, the first field the
message id. The server answers the handshake with its version and a time, then `nextValidId` and
`managedAccounts`; the startup requests ib_async sends (positions, open and completed orders, account
updates, executions) and account summaries get their "end" message at once, with no content; a
contract details request is answered from `contract_ids` (symbol -> conId), with nothing for others.
Depth and tick-by-tick requests are recorded by contract id; the test pushes MARKET_DEPTH(_L2),
tick-by-tick AllLast and error messages to them, and can drop the connection.
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict

SERVER_VERSION = 178  # ib_async 2.1 speaks client versions 157..178

# incoming message ids (client -> server)
_REQ_MKT_DEPTH, _CANCEL_MKT_DEPTH = 10, 11
_REQ_OPEN_ORDERS, _REQ_ACCOUNT_UPDATES, _REQ_EXECUTIONS, _REQ_CONTRACT_DETAILS = 5, 6, 7, 9
_REQ_POSITIONS, _REQ_ACCOUNT_SUMMARY, _START_API, _REQ_ACCOUNT_UPDATES_MULTI = 61, 62, 71, 76
_REQ_TICK_BY_TICK, _CANCEL_TICK_BY_TICK, _REQ_COMPLETED_ORDERS = 97, 98, 99


def _frame(*fields: object) -> bytes:
    body = b"".join(str(f).encode() + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


def _contract_data(req: str, symbol: str, sec_type: str, exchange: str, currency: str, con_id: int) -> bytes:
    """CONTRACT_DATA as TWS 164+ sends it (the fields ib_async's decoder reads, most left empty)."""
    return _frame(10, req, symbol, sec_type, "", 0.0, "", exchange, currency, symbol, "NMS", symbol, con_id, 0.01,
                  "", "LMT,MKT", exchange, 1, 0, f"{symbol} INC", "NASDAQ", "", "", "", "", "US/Eastern", "", "", "",
                  0, 0, 0, "", "", "26", "", "COMMON", 1, 1, 1)


class FakeTws:
    """One TWS API endpoint on 127.0.0.1 (ephemeral port); `start()` / `stop()` it from the test."""

    def __init__(self, account: str = "DU0000001", contract_ids: dict[str, int] | None = None) -> None:
        self.account = account
        self.contract_ids = contract_ids or {}
        self.port = 0
        self.connections = 0
        self.client_ids: list[int] = []
        self.requests: list[list[str]] = []  # every message received after the handshake, as fields
        self.depth_reqs: dict[int, int] = {}  # conId -> reqId of the live reqMktDepth
        self.depth_rows: dict[int, int] = {}  # conId -> numRows asked for
        self.depth_smart: dict[int, bool] = {}  # conId -> isSmartDepth asked for
        self.tbt_reqs: dict[int, int] = {}  # conId -> reqId of the live tick-by-tick request
        self.depth_requests: defaultdict[int, int] = defaultdict(int)  # conId -> reqMktDepth count
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        """Listen on an ephemeral loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Drop every client and stop listening."""
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop(self) -> None:
        """Close every client connection (TWS restarting, the network going away)."""
        for w in self._writers:
            w.close()
        self._writers.clear()

    # --- pushes to the client ------------------------------------------------------------------

    def depth(self, con_id: int, rows: list[tuple], l2: bool = True, req_id: int | None = None) -> None:
        """Send depth rows `(position, operation, side, price, size[, market maker])` for a contract
        (or an explicit, e.g. cancelled, request id), all in one write (one update in ib_async)."""
        req = self.depth_reqs[con_id] if req_id is None else req_id
        out = []
        for row in rows:
            pos, op, side, price, size, *mm = row
            if l2:
                out.append(_frame(13, 1, req, pos, mm[0] if mm else "", op, side, price, size, 0))
            else:
                out.append(_frame(12, 1, req, pos, op, side, price, size))
        self._write(b"".join(out))

    def trade(self, con_id: int, price: float, size: float, time_s: int = 1_700_000_000,
              exchange: str = "ISLAND") -> None:
        """Send one tick-by-tick AllLast print for a contract."""
        self._write(_frame(99, self.tbt_reqs[con_id], 2, time_s, price, size, 0, exchange, ""))

    def error(self, req_id: int, code: int, text: str, then: bytes = b"") -> None:
        """Send an error message for a request id (and `then`, in the same write)."""
        self._write(_frame(4, 2, req_id, code, text, "") + then)

    def depth_frames(self, con_id: int, rows: list[tuple]) -> bytes:
        """The MARKET_DEPTH_L2 messages of `rows` (as `depth` takes them), to send with something else."""
        req = self.depth_reqs[con_id]
        return b"".join(_frame(13, 1, req, pos, mm[0] if mm else "", op, side, price, size, 0)
                        for pos, op, side, price, size, *mm in rows)

    def _write(self, data: bytes) -> None:
        for w in self._writers:
            w.write(data)

    # --- waiting for the client ----------------------------------------------------------------

    async def wait_depth(self, con_id: int, count: int = 1) -> int:
        """Wait until reqMktDepth for `con_id` has been received `count` times; its live reqId."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.depth_requests[con_id] >= count)
        return self.depth_reqs[con_id]

    async def wait_tick_by_tick(self, con_id: int) -> int:
        """Wait until a tick-by-tick request for `con_id` is live; its reqId."""
        async with self._changed:
            await self._changed.wait_for(lambda: con_id in self.tbt_reqs)
        return self.tbt_reqs[con_id]

    async def wait_connections(self, count: int) -> None:
        """Wait until `count` clients have completed the handshake."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.connections >= count)

    # --- the protocol --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(4) != b"API\0":
                writer.close()
                return
            await self._read_fields(reader)  # "v157..178"
            self._writers.append(writer)
            writer.write(_frame(SERVER_VERSION, "20250102 12:00:00 UTC"))
            while True:
                fields = await self._read_fields(reader)
                self.requests.append(fields)
                self._answer(writer, fields)
                async with self._changed:
                    self._changed.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test's loop is shutting down
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    @staticmethod
    async def _read_fields(reader: asyncio.StreamReader) -> list[str]:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        fields = (await reader.readexactly(n)).decode().split("\0")
        fields.pop()
        return fields

    def _answer(self, w: asyncio.StreamWriter, f: list[str]) -> None:
        msg = int(f[0])
        if msg == _START_API:
            self.client_ids.append(int(f[2]))
            self.connections += 1
            w.write(_frame(9, 1, 1) + _frame(15, 1, self.account))
        elif msg == _REQ_POSITIONS:
            w.write(_frame(62, 1))
        elif msg == _REQ_OPEN_ORDERS:
            w.write(_frame(53, 1))
        elif msg == _REQ_COMPLETED_ORDERS:
            w.write(_frame(102))
        elif msg == _REQ_ACCOUNT_UPDATES:
            w.write(_frame(54, 1, self.account))
        elif msg == _REQ_ACCOUNT_UPDATES_MULTI:
            w.write(_frame(74, 1, f[2]))
        elif msg == _REQ_ACCOUNT_SUMMARY:
            w.write(_frame(64, 1, f[2]))
        elif msg == _REQ_EXECUTIONS:
            w.write(_frame(55, 1, f[2]))
        elif msg == _REQ_CONTRACT_DETAILS:  # 9, 8, reqId, conId, symbol, secType, ..., exchange, ..., currency
            req, symbol = f[2], f[4]
            con_id = self.contract_ids.get(symbol)
            if con_id is not None:
                w.write(_contract_data(req, symbol, f[5], f[10], f[12], con_id))
            w.write(_frame(52, 1, req))
        elif msg == _REQ_MKT_DEPTH:  # 10, 5, reqId, conId, symbol, ..., numRows, isSmartDepth, options
            con_id = int(f[3])
            self.depth_reqs[con_id] = int(f[2])
            self.depth_rows[con_id] = int(f[-3])
            self.depth_smart[con_id] = f[-2] == "1"
            self.depth_requests[con_id] += 1
        elif msg == _CANCEL_MKT_DEPTH:
            req = int(f[2])
            self.depth_reqs = {c: r for c, r in self.depth_reqs.items() if r != req}
        elif msg == _REQ_TICK_BY_TICK:  # 97, reqId, conId, symbol, ..., tickType, numberOfTicks, ignoreSize
            self.tbt_reqs[int(f[2])] = int(f[1])
        elif msg == _CANCEL_TICK_BY_TICK:
            req = int(f[1])
            self.tbt_reqs = {c: r for c, r in self.tbt_reqs.items() if r != req}
