"""An embedded simulated XenServer pool: xapi over XML-RPC, xenopsd's hooks, dom0s that fill up.

It stands in only for what cannot run here. xsguard talks to it with the real XenAPI client,
its hook and plugin run as real subprocesses, and each simulated dom0 shows its state through
the same interfaces a real one has (an ``lsevtchn`` executable, ``/proc/interrupts``, a
kernel log). What only a simulator can do is under the ``sim.`` namespace of the same endpoint.
"""
