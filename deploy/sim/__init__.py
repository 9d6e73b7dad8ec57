"""A simulated two-region layout on one machine (issue #18, item 1).

Test hosts are network namespaces on one bridge, each with its own sshd, so a
`ray up` with the local provider can reach them like real machines. Region a
and region b each have a head and a worker host and a Kafka broker on the
head; Weaviate runs on a-head. Nothing is delayed inside a region; traffic
between regions goes through Toxiproxy (the `wan` host), which adds 20 ms each
way, because this kernel has no netem qdisc to delay packets.

    python -m freshvec.deploy.sim up|down|status

Kept light on purpose: the probe and the launcher run as subprocesses inside
the namespaces and import this package first.
"""
