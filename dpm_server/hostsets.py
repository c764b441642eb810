"""A set of hosts made from a larger one less a few (`Part`).

The ports of one VPC each list nearly every host of the VPC: all of them but the port's
own. The DPM reads such a listing as `Part(base, out)`, the set of the VPC's hosts less
the port's own, so whoever already knows that `base` lies within a bound (the VPC's
members, a multicast's hosts) knows it of the part in O(1), and two parts of one base
compare by their `out`. The helpers that use this live with the inputs
(`dpm_server.inputs`: `base_of`, `same`, `united`, `within`).

Not compiled (mypyc builds no subclass of a builtin type); its callers are.
"""

from __future__ import annotations


class Part(set[str]):
    """`base` less `out` (out lies within base). Never changed once made, nor is its base."""

    __slots__ = ("base", "out")

    def __init__(self, base: set[str], out: set[str]) -> None:
        super().__init__(base)
        self.difference_update(out)
        self.base = base
        self.out = out
