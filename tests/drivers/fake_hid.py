"""A fake cython-hidapi ``hid`` module with dcttech USB relay boards behind it, at the report level.

:class:`FakeHidRelayBoard` emulates the board's firmware: it takes the 9-byte feature reports
(``00 FF n`` on, ``00 FD n`` off, ``00 FC`` all off, ``00 FE`` all on), keeps the relay mask,
answers feature report 1 with ``serial[5] 00 00 mask``, logs every report and every change of
its mask with the injected clock's time, and can be unplugged (its relays drop, handles die).
:class:`FakeHid` offers the two calls the driver uses from the real module, ``enumerate`` and
``device``, with cython-hidapi's failure behaviour (``send_feature_report`` returns -1, reads
raise ``OSError``, a closed handle raises ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeHidRelayBoard:
    clock: object
    serial: str = "TNM01"
    relays: int = 8
    path: bytes = b"/dev/hidraw7"
    mask: int = 0
    plugged: bool = True
    generation: int = 0
    reports: list[tuple[float, list[int]]] = field(default_factory=list)
    mask_log: list[tuple[float, int]] = field(default_factory=list)  # (t, mask) after changes

    def _set_mask(self, mask: int) -> None:
        mask &= (1 << self.relays) - 1
        if mask != self.mask:
            self.mask = mask
            self.mask_log.append((self.clock.monotonic(), mask))

    def handle(self, report: list[int]) -> None:
        self.reports.append((self.clock.monotonic(), list(report)))
        if len(report) < 3 or report[0] != 0:
            return  # the firmware ignores what it does not understand
        cmd, relay = report[1], report[2]
        bit = 1 << (relay - 1) if 1 <= relay <= self.relays else 0
        if cmd == 0xFF:
            self._set_mask(self.mask | bit)
        elif cmd == 0xFD:
            self._set_mask(self.mask & ~bit)
        elif cmd == 0xFC:
            self._set_mask(0)
        elif cmd == 0xFE:
            self._set_mask(0xFF)

    def state_report(self) -> list[int]:
        name = self.serial.encode("ascii")[:5].ljust(5, b"\0")
        return list(name) + [0, 0, self.mask]

    def unplug(self) -> None:
        """USB cable out: the board loses power (relays drop) and open handles die."""
        self.plugged = False
        self.generation += 1
        self._set_mask(0)

    def replug(self) -> None:
        self.plugged = True


class FakeHidDevice:
    def __init__(self, hid: FakeHid):
        self._hid = hid
        self._board: FakeHidRelayBoard | None = None
        self._generation = -1

    def open_path(self, path: bytes) -> None:
        for board in self._hid.boards:
            if board.path == path and board.plugged:
                self._board, self._generation = board, board.generation
                return
        raise OSError("open failed")

    def _alive(self) -> FakeHidRelayBoard | None:
        if self._board is None:
            raise ValueError("not open")
        if not self._board.plugged or self._board.generation != self._generation:
            return None
        return self._board

    def send_feature_report(self, data) -> int:
        board = self._alive()
        if board is None:
            return -1
        board.handle(list(data))
        return len(data)

    def get_feature_report(self, report_num: int, max_length: int) -> list[int]:
        board = self._alive()
        if board is None:
            raise OSError("read error")
        return board.state_report()[:max_length]

    def close(self) -> None:
        self._board = None


class FakeHid:
    """Stands in for ``import hid`` (cython-hidapi): ``enumerate`` and ``device``."""

    def __init__(self, boards: list[FakeHidRelayBoard]):
        self.boards = boards

    def enumerate(self, vendor_id: int = 0, product_id: int = 0) -> list[dict]:
        return [{"path": b.path, "vendor_id": 0x16C0, "product_id": 0x05DF,
                 "product_string": f"USBRelay{b.relays}", "manufacturer_string": "www.dcttech.com",
                 "serial_number": "", "interface_number": 0}
                for b in self.boards if b.plugged
                and vendor_id in (0, 0x16C0) and product_id in (0, 0x05DF)]

    def device(self) -> FakeHidDevice:
        return FakeHidDevice(self)
