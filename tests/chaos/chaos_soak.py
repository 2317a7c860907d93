#!/usr/bin/env python3
"""Chaos soak: a real training job (chaos_worker) run through kolorun while
faults are injected, on one host (3 ranks) and on two hosts made of network
namespaces (2 x 2 ranks).

Every run of a topology resumes from the checkpoint the previous run left
(so each fault's last checkpoint is proven resumable by the next run, and a
last short run checks the final one), and every checkpoint digest is
compared with a one-process reference computation of the same training.

Faults, each injected while the job runs:
  sigkill      SIGKILL of a random rank (rank 0 included), chosen by the seed
  sigstop      SIGSTOP of a random rank for longer than the peer timeout,
               then SIGKILL
  tcp-junk     junk, impersonating and silent TCP connections to every
               listening port in the job's network namespaces, from before
               start-up (kolo's wire-up listeners) to the end of training
  shm-full     /dev/shm (a tmpfs in a private mount namespace) already full
               at start: init must fail cleanly on every rank
  shm-fill     /dev/shm filled to the last byte during training: training
               must go on
  link-down    the veth link between the two hosts goes down
  udp-flood    datagrams from both hosts to every UDP port of the job
                (kolo's networked doorbells)

Asserted: every run ends within its bound (no hang); after a fatal fault
every surviving rank fails with Aborted (init failure for shm-full) naming
the cause, within the peer timeout plus a margin; a harmless fault leaves
training complete and correct; no WRONG line ever; every checkpoint valid
and equal to the reference. Prints a markdown table and writes it to
--table. Exits 0 on success, 1 on a failed assertion, 77 when namespaces
cannot be created here (skip).

  chaos_soak.py --kolorun build/launcher/kolorun \\
      --worker build/tests/chaos/chaos_worker [--topology one-host|two-hosts|all]
      [--seed N] [--table FILE] [--peer-timeout S] [--keep]
"""

import argparse
import atexit
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
TAG = "ch"  # every namespace and veth this script creates carries it
LINE_RE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z rank (\S+): (.*)$")
STEPS_PER_RUN = 40
CHECKPOINT_EVERY = 10
BATCH = 1


def log(message):
    print(f"chaos: {message}", flush=True)


def epoch(stamp):
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def sh(*argv, check=True, timeout=30, **kwargs):
    return subprocess.run(argv, check=check, timeout=timeout,
                          capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------------------
# Clean-up: namespaces (and everything running in them), jobs, flooders.

class Cleanup:
    namespaces = []
    processes = []

    @classmethod
    def run(cls):
        for proc in cls.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in cls.namespaces:
            kill_namespace_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        cls.namespaces = []


def kill_namespace_processes(ns):
    # Only processes inside our own namespaces: ours by construction.
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                         text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def namespace_processes(ns, comm):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                         text=True).stdout
    pids = []
    for pid in out.split():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def remove_stale_namespaces():
    """Namespaces of an earlier run that was killed outright (SIGKILL)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"kolo-{TAG}-[a-z]+-(\d+)", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            kill_namespace_processes(name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------
# Helpers that run inside a namespace (this script, re-invoked through
# `ip netns exec`): they see only that namespace's sockets.

def proc_net(kind):
    """(address, port, state) of the sockets in /proc/net/<kind>[6]."""
    result = []
    for name, family in ((kind, socket.AF_INET), (kind + "6", socket.AF_INET6)):
        try:
            with open(f"/proc/net/{name}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            addr = socket.inet_ntop(family, raw)
            result.append((addr, int(port_hex, 16), fields[3], int(fields[9])))
    return result


def socket_owners():
    """inode -> "comm[pid]" for the processes of this network namespace."""
    own = os.readlink("/proc/self/ns/net")
    owners = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own:
                continue
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = f"{comm}[{pid}]"
        except OSError:
            continue
    return owners


def connect_target(addr):
    if addr == "0.0.0.0":
        return "127.0.0.1"
    if addr == "::":
        return "::1"
    return addr


def worker_sockets(stdout_path, pids):
    """Adds the ranks' pids (from their "started pid=" lines) to `pids`;
    returns the socket inodes they hold."""
    try:
        with open(stdout_path, errors="replace") as f:
            pids.update(int(p) for p in re.findall(r"started pid=(\d+)",
                                                   f.read()))
    except OSError:
        pass
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue
    return inodes


def probe_tcp(args):
    """Junk and impersonating connections to every listening port of the
    namespace, as soon as it appears and then every --period seconds; to the
    ranks' ports (kolo's wire-up, Open MPI's in-process listeners) also
    connections that stay open and silent. Open MPI 4.1's daemons (mpirun,
    orted) get no silent connection: one stops mpirun for good (its
    out-of-band connect handshake reads with a blocking recv), which is
    Open MPI's weakness, not kolo's."""
    rng = random.Random(args.seed)
    last = {}        # (addr, port) -> time of the last probe
    silent = []      # open connections that never send anything
    silent_per_port = {}
    events = []
    owners_of = {}
    pids = set()
    deadline = time.time() + args.duration
    while time.time() < deadline and not os.path.exists(args.stop_file):
        ranks = worker_sockets(args.pids_from, pids)
        listeners = [(a, p, inode) for a, p, state, inode in proc_net("tcp")
                     if state == "0A"]
        now = time.time()
        fresh = False
        for addr, port, inode in listeners:
            key = (addr, port)
            if key in last and now - last[key] < args.period:
                continue
            first = key not in last
            last[key] = now
            target = connect_target(addr)
            family = socket.AF_INET6 if ":" in target else socket.AF_INET
            outcome = {"rank": inode in ranks}
            payloads = {
                "junk": rng.randbytes(64),
                # The old wire-up took a bare 4-byte rank: claim rank 1 and
                # follow with a made-up 32-byte proof.
                "impersonate": (1).to_bytes(4, "little") + rng.randbytes(32),
            }
            for kind, payload in payloads.items():
                try:
                    with socket.socket(family, socket.SOCK_STREAM) as s:
                        s.settimeout(0.5)
                        s.connect((target, port))
                        s.sendall(payload)
                    outcome[kind] = "sent"
                except OSError as e:
                    outcome[kind] = f"error {e.errno}"
            if inode in ranks and silent_per_port.get(key, 0) < 2:
                try:
                    s = socket.socket(family, socket.SOCK_STREAM)
                    s.settimeout(0.5)
                    s.connect((target, port))
                    silent.append(s)
                    silent_per_port[key] = silent_per_port.get(key, 0) + 1
                    outcome["silent"] = "open"
                except OSError as e:
                    outcome["silent"] = f"error {e.errno}"
            events.append({"time": now, "addr": addr, "port": port,
                           "inode": inode, "first": first, **outcome})
            fresh = fresh or (first and inode not in owners_of)
        if fresh:
            # After probing, so that a short-lived listener is hit first.
            owners_of.update(socket_owners())
        time.sleep(0.005)
    for s in silent:
        s.close()
    for e in events:
        e["owner"] = owners_of.get(e["inode"], "?")
    with open(args.out, "w") as f:
        json.dump(events, f)


def flood_udp(args):
    """Datagrams to every UDP port of this namespace (from loopback and from
    the host's own address) and of the peer namespaces (over the link)."""
    rng = random.Random(args.seed)
    owners = socket_owners()
    sockets = [(a, p, owners.get(inode, "?"))
               for a, p, _state, inode in proc_net("udp") if ":" not in a]
    mine = [(a, p) for a, p, _owner in sockets]
    with open(os.path.join(args.ports_dir, f"udp-{args.name}.json"), "w") as f:
        json.dump({"addr": args.addr, "ports": mine}, f)
    targets = set()
    for addr, port in mine:
        if addr == "0.0.0.0":
            targets.update({("127.0.0.1", port), (args.addr, port)})
        else:
            targets.add((addr, port))
    for peer in args.peers.split(",") if args.peers else []:
        path = os.path.join(args.ports_dir, f"udp-{peer}.json")
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        try:
            with open(path) as f:
                theirs = json.load(f)
        except (OSError, ValueError):
            continue
        for addr, port in theirs["ports"]:
            if addr == "0.0.0.0":
                targets.add((theirs["addr"], port))
            elif not addr.startswith("127."):
                targets.add((addr, port))
    targets = sorted(targets)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
               for _ in range(4)]
    for s in senders:
        s.setblocking(False)
    # Sizes: empty, tag-sized, and larger datagrams.
    payloads = [b"", rng.randbytes(16), rng.randbytes(32), rng.randbytes(48),
                rng.randbytes(512)]
    sent = errors = 0
    start = time.time()
    deadline = start + args.duration
    batch = 100
    while targets and time.time() < deadline and \
            not os.path.exists(args.stop_file):
        for i in range(batch):
            addr, port = targets[(sent + i) % len(targets)]
            try:
                senders[i % len(senders)].sendto(payloads[i % len(payloads)],
                                                 (addr, port))
            except OSError:
                errors += 1
        sent += batch
        # Hold the rate near --rate datagrams per second.
        ahead = sent / args.rate - (time.time() - start)
        if ahead > 0:
            time.sleep(ahead)
    with open(args.out, "w") as f:
        json.dump({"targets": targets, "sent": sent, "errors": errors,
                   "seconds": time.time() - start, "sockets": sockets}, f)


# ---------------------------------------------------------------------------
# Topologies.

class OneHost:
    """3 ranks on one host, in a network namespace of their own (loopback
    only), so that every socket in it belongs to the job."""
    key = "one-host"
    ranks = 3

    def __init__(self, work):
        self.ns = f"kolo-{TAG}-h-{os.getpid()}"
        self.hosts = {self.ns: "lo"}
        self.work = work

    def label(self):
        return "1 host x 3"

    def create(self):
        Cleanup.namespaces.append(self.ns)
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")

    def namespaces(self):
        return [self.ns]

    def command(self, kolorun, mpi_args, kolorun_args, worker_cmd, shm=None):
        inner = [kolorun, "-np", str(self.ranks), "--start-timeout", "60",
                 "--mpi-args", " ".join(mpi_args)] + kolorun_args + \
            ["--"] + worker_cmd
        return ["ip", "netns", "exec", self.ns] + with_shm(shm, inner)


class TwoHosts:
    """2 hosts x 2 ranks: two network namespaces joined by a veth pair, each
    with its own host name; Open MPI's ssh replaced by an agent script."""
    key = "two-hosts"
    ranks = 4

    def __init__(self, work):
        pid = os.getpid()
        self.ns_a, self.ns_b = f"kolo-{TAG}-a-{pid}", f"kolo-{TAG}-b-{pid}"
        self.veth_a, self.veth_b = f"k{TAG}a{pid}", f"k{TAG}b{pid}"
        self.addr_a, self.addr_b = "10.78.0.1", "10.78.0.2"
        self.subnet = "10.78.0.0/24"
        self.hosts = {self.ns_a: self.addr_a, self.ns_b: self.addr_b}
        self.work = work
        self.agent = os.path.join(work, "agent")

    def label(self):
        return "2 hosts x 2"

    def create(self):
        for ns in (self.ns_a, self.ns_b):
            Cleanup.namespaces.append(ns)
            sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", self.ns_a, "unshare", "--uts", "true")
        sh("ip", "link", "add", self.veth_a, "type", "veth", "peer", "name",
           self.veth_b)
        for ns, veth, addr in ((self.ns_a, self.veth_a, self.addr_a),
                               (self.ns_b, self.veth_b, self.addr_b)):
            sh("ip", "link", "set", veth, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", veth)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", veth, "up")
        with open(self.agent, "w") as f:
            f.write(f"""#!/bin/sh
host=$1; shift
case "$host" in
  {self.addr_a}) ns={self.ns_a};;
  {self.addr_b}) ns={self.ns_b};;
  *) echo "agent: unknown host $host" >&2; exit 1;;
esac
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
""")
        os.chmod(self.agent, 0o755)

    def namespaces(self):
        return [self.ns_a, self.ns_b]

    def link(self, up):
        state = "up" if up else "down"
        sh("ip", "-n", self.ns_b, "link", "set", self.veth_b, state)
        sh("ip", "-n", self.ns_a, "link", "set", self.veth_a, state)

    def command(self, kolorun, mpi_args, kolorun_args, worker_cmd, shm=None):
        mpi = ["--mca", "plm_rsh_agent", self.agent,
               "--mca", "btl_tcp_if_include", self.subnet,
               "--mca", "oob_tcp_if_include", self.subnet] + mpi_args
        inner = [kolorun, "-np", str(self.ranks), "-H",
                 f"{self.addr_a}:2,{self.addr_b}:2",
                 "--cpu-operations", "hierarchical", "--start-timeout", "60",
                 "--mpi-args", " ".join(mpi)] + kolorun_args + \
            ["--"] + worker_cmd
        # mpirun runs on the first host, where the other host's daemon can
        # reach it over the link.
        return ["ip", "netns", "exec", self.ns_a, "unshare", "--uts", "sh",
                "-c", f'hostname {self.ns_a}; exec "$0" "$@"'] + \
            with_shm(shm, inner)


def with_shm(shm, command):
    """Runs `command` with a private /dev/shm of shm["size"] bytes (a tmpfs
    in a mount namespace of its own), pre-filled when shm["full"]."""
    if shm is None:
        return command
    fill = ("dd if=/dev/zero of=/dev/shm/chaos-fill bs=64k 2>/dev/null; "
            if shm["full"] else "")
    script = (f"mount -t tmpfs -o size={shm['size']} tmpfs /dev/shm && "
              f"{fill}exec \"$0\" \"$@\"")
    return ["unshare", "-m", "sh", "-c", script] + command


# ---------------------------------------------------------------------------
# One job through kolorun.

class Job:
    def __init__(self, soak, name, worker_args, kolorun_args=(),
                 mpi_args=(), shm=None):
        self.soak = soak
        self.topo = soak.topo
        self.name = name
        self.dir = os.path.join(soak.work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        worker = [soak.args.worker, "--checkpoint-dir", soak.checkpoints,
                  "--checkpoint-every", str(CHECKPOINT_EVERY),
                  "--seed", str(soak.data_seed), "--batch", str(BATCH),
                  "--log-every", "1"] + list(worker_args)
        # --enable-recovery: Open MPI would otherwise kill the surviving
        # ranks as soon as one dies, and the soak is about what kolo does.
        self.argv = self.topo.command(
            soak.args.kolorun, ["--enable-recovery"] + list(mpi_args),
            list(kolorun_args), worker, shm)
        self.proc = None
        self.rc = None
        self.hung = False
        self.mpirun_stuck = None
        self.started_at = None
        self.ended_at = None

    def start(self):
        env = dict(os.environ)
        env["KOLO_PEER_TIMEOUT_SECONDS"] = str(self.soak.args.peer_timeout)
        with open(os.path.join(self.dir, "command"), "w") as f:
            f.write(" ".join(self.argv) + "\n")
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.started_at = time.time()
        self.proc = subprocess.Popen(self.argv, stdout=self.out,
                                     stderr=self.err, env=env,
                                     start_new_session=True)
        Cleanup.processes.append(self.proc)

    def lines(self):
        """[(rank, epoch seconds, message)] of the workers' log lines."""
        result = []
        with open(self.out_path, errors="replace") as f:
            for line in f:
                m = LINE_RE.search(line)
                if m:
                    result.append((m.group(2), epoch(m.group(1)), m.group(3)))
        return result

    def stderr_text(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def pids(self):
        pids = {}
        for rank, _t, msg in self.lines():
            m = re.match(r"started pid=(\d+) host=(\S+)", msg)
            if m:
                pids[int(rank)] = (int(m.group(1)), m.group(2))
        return pids

    def progress(self):
        """rank -> last completed step."""
        steps = {}
        for rank, _t, msg in self.lines():
            m = re.match(r"step (\d+) ", msg)
            if m:
                steps[rank] = int(m.group(1))
        return steps

    def step_seconds(self, rank="0", last=5):
        """Median time per step of `rank` over its last steps so far."""
        times = [t for r, t, msg in self.lines()
                 if r == rank and re.match(r"step \d+ ", msg)][-last - 1:]
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        return gaps[len(gaps) // 2] if gaps else 0.0

    def failures(self):
        """rank -> (time, code, message) of its first FAILURE line."""
        result = {}
        for rank, t, msg in self.lines():
            m = re.match(r"FAILURE (.*?): ([A-Z_]+): (.*)$", msg)
            if m and rank not in result:
                result[rank] = (t, m.group(2), m.group(3), m.group(1))
        return result

    def exits(self):
        """rank -> how the rank monitor saw it end ("exit 1", "signal 9");
        ranks that ended well are not reported."""
        result = {}
        for m in re.finditer(r"kolorun: rank (\d+) on host \S+ (?:exited with "
                             r"status (\d+)|was killed by signal (\d+))",
                             self.stderr_text()):
            result[int(m.group(1))] = f"exit {m.group(2)}" if m.group(2) \
                else f"signal {m.group(3)}"
        return result

    def done_ranks(self):
        return {rank for rank, _t, msg in self.lines()
                if msg.startswith("done steps=")}

    def running(self):
        return self.proc.poll() is None

    def wait_until(self, predicate, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return True
            if not self.running():
                return predicate()
            time.sleep(0.05)
        return False

    def reached(self, step):
        def check():
            progress = self.progress()
            return len(progress) == self.topo.ranks and \
                min(progress.values()) >= step
        return check

    def ranks_ended(self):
        """Whether every rank has ended (a failure report from its monitor,
        or its last line after a clean shutdown)."""
        return len(set(self.exits()) | {int(r) for r in self.done_ranks()}) \
            == self.topo.ranks

    def finish(self, timeout, grace=5):
        timeout = min(timeout, max(self.soak.deadline - time.time(), 10))
        """Waits for kolorun. When every rank has ended but mpirun is still
        running `grace` seconds later, that is Open MPI's daemons not ending
        the job: mpirun gets SIGTERM (noted in mpirun_stuck). A job still
        running after `timeout` hangs: everything in the namespaces is
        killed."""
        deadline = time.time() + timeout
        ranks_gone = terminated = None
        while self.proc.poll() is None and time.time() < deadline:
            now = time.time()
            if ranks_gone is None and self.ranks_ended():
                ranks_gone = now
            if ranks_gone is not None and terminated is None and \
                    now - ranks_gone > grace:
                self.mpirun_stuck = f"{now - ranks_gone:.0f} s"
                terminated = now
                for ns in self.topo.namespaces():
                    for pid in namespace_processes(ns, "mpirun"):
                        os.kill(pid, signal.SIGTERM)
            if terminated is not None and now - terminated > grace:
                break
            time.sleep(0.1)
        if self.proc.poll() is None:
            self.hung = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            for ns in self.topo.namespaces():
                kill_namespace_processes(ns)
        self.rc = self.proc.wait(timeout=30)
        self.ended_at = time.time()
        self.out.close()
        self.err.close()
        return self.rc


# ---------------------------------------------------------------------------
# The soak.

class Soak:
    def __init__(self, args, topo, rng):
        self.args = args
        self.topo = topo
        self.rng = rng
        self.data_seed = rng.randrange(1, 1 << 31)
        self.work = os.path.join(args.work, topo.key)
        os.makedirs(self.work)
        self.checkpoints = os.path.join(self.work, "checkpoints")
        os.makedirs(self.checkpoints)
        self.rows = []
        self.failures = []
        self.findings = []
        self.deadline = args.started + args.budget
        self.digests = {}       # step -> digest, as written by the runs
        self.start_step = 0     # newest valid checkpoint's step
        self.pending = []       # rows whose last checkpoint awaits a resume

    # -- checkpoints ------------------------------------------------------

    def check_checkpoints(self):
        """Validates every checkpoint file; returns (newest step, note)."""
        files = sorted(f for f in os.listdir(self.checkpoints)
                       if re.fullmatch(r"ckpt-\d+\.kolo", f))
        temporaries = [f for f in os.listdir(self.checkpoints)
                       if f.startswith(".ckpt-")]
        newest = None
        bad = []
        for name in files:
            r = subprocess.run(
                [self.args.worker, "--check-checkpoint",
                 os.path.join(self.checkpoints, name)],
                capture_output=True, text=True, timeout=60)
            m = re.search(r"step=(\d+) .*digest=([0-9a-f]{64})", r.stdout)
            if r.returncode != 0 or not m:
                bad.append(f"{name}: {r.stdout.strip()}")
                continue
            step, digest = int(m.group(1)), m.group(2)
            if self.digests.setdefault(step, digest) != digest:
                bad.append(f"{name}: digest {digest} differs from the one "
                           f"logged when step {step} was written")
            newest = step
        if bad:
            self.fail("corrupted checkpoint: " + "; ".join(bad))
        note = f"step {newest}, valid" if newest is not None else "none yet"
        if temporaries:
            note += f" ({len(temporaries)} partial temp file(s) left by a " \
                    "killed writer, ignored)"
        return newest, note, not bad

    def record_logged_checkpoints(self, job):
        for rank, _t, msg in job.lines():
            m = re.match(r"checkpoint \S+ step=(\d+) digest=([0-9a-f]{64})",
                         msg)
            if m and rank == "0":
                step, digest = int(m.group(1)), m.group(2)
                if self.digests.setdefault(step, digest) != digest:
                    self.fail(f"{job.name}: step {step} written twice with "
                              "different digests")

    def check_resumed(self, job):
        """Every rank of the job must have resumed from the newest checkpoint
        the earlier runs left; that proves those runs' last checkpoints
        resumable. A job that failed before resuming (shm-full) proves
        nothing and leaves them pending."""
        steps = {rank: int(m.group(1)) for rank, _t, msg in job.lines()
                 for m in [re.match(r"resumed at step (\d+)$", msg)] if m}
        if len(steps) != self.topo.ranks:
            return
        for row in self.pending:
            if set(steps.values()) == {row["checkpoint_step"]}:
                row["resumed"] = f"yes (run {job.name[:2]})"
            else:
                row["resumed"] = f"NO: run {job.name[:2]} resumed at {steps}"
                self.fail(f"{job.name} resumed at {steps}, not at the newest "
                          f"checkpoint, step {row['checkpoint_step']}")
        self.pending = []

    # -- runs ---------------------------------------------------------------

    def finding(self, row, message):
        """Something of kolo's that is wrong but does not fail the soak."""
        if message not in self.findings:
            log(f"finding: {message}")
            self.findings.append(message)
        row["happened"] += f" [finding: {message}]"

    def fail(self, message):
        log(f"ASSERTION FAILED: {message}")
        self.failures.append(message)

    def new_job(self, name, steps=STEPS_PER_RUN, **kwargs):
        return Job(self, name, ["--resume", "--steps",
                                str(self.start_step + steps)], **kwargs)

    def after_run(self, job, row):
        for ns in self.topo.namespaces():
            left = namespace_processes(ns, "chaos_worker")
            if left:
                self.fail(f"{job.name}: rank processes {left} outlived the job")
                row["verdict"].append("ranks outlived the job")
                kill_namespace_processes(ns)
        wrong = [f"rank {r}: {m}" for r, _t, m in job.lines()
                 if m.startswith("WRONG")]
        if wrong:
            self.fail(f"{job.name}: WRONG results: {wrong[:3]}")
            row["verdict"].append("WRONG result")
        signals = re.findall(r".*(?:Segmentation|Bus error|SIGBUS|SIGSEGV|"
                             r"core dumped|signal 7|signal 11).*",
                             job.stderr_text())
        if signals:
            self.fail(f"{job.name}: a process crashed: {signals[:2]}")
            row["verdict"].append("crash")
        self.record_logged_checkpoints(job)
        self.check_resumed(job)
        newest, note, intact = self.check_checkpoints()
        row["checkpoint"] = note
        if not intact:
            row["verdict"].append("corrupted checkpoint")
        if newest is not None:
            self.start_step = newest
            row["checkpoint_step"] = newest
            row["resumed"] = "NO: never resumed"
            self.pending.append(row)
        else:
            row["resumed"] = "-"
        row["kolorun"] = "killed (hang)" if job.hung else str(job.rc)
        if job.mpirun_stuck:
            row["kolorun"] += (f"; mpirun had not exited {job.mpirun_stuck} "
                               "after every rank had ended: SIGTERM by the "
                               "driver")
        by_outcome = {}
        for r, how in sorted(job.exits().items()):
            by_outcome.setdefault(how, []).append(str(r))
        if by_outcome:
            row["kolorun"] += " (" + "; ".join(
                f"rank{'s' if len(rs) > 1 else ''} {','.join(rs)}: {how}"
                for how, rs in by_outcome.items()) + ")"
        row["dir"] = job.dir
        self.rows.append(row)
        log(f"{job.name}: {row['happened']}; detection "
            f"{row['detection']}; kolorun exit {row['kolorun']}; "
            f"checkpoint {row['checkpoint']}")

    def survivors_report(self, job, survivors, t_inject, cause, limit, row,
                         expect_code="ABORTED"):
        """Checks that every survivor failed with `expect_code`, with a
        message matching `cause`, within `limit` seconds of t_inject."""
        failures = job.failures()
        missing = [r for r in survivors if str(r) not in failures]
        messages = {}
        for r in survivors:
            if str(r) in failures:
                t, code, message, _where = failures[str(r)]
                messages.setdefault(f"{code}: {message}", []).append(r)
        row["happened"] = "; ".join(
            f"rank{'s' if len(ranks) > 1 else ''} "
            f"{','.join(map(str, ranks))}: {shorten(text)}"
            for text, ranks in messages.items()) or "no rank reported"
        if missing:
            self.fail(f"{job.name}: ranks {missing} did not report a failure")
            row["verdict"].append(f"ranks {missing} silent")
            row["detection"] = "never"
            return
        host_of = {r: h for r, (_p, h) in job.pids().items()}
        for r in survivors:
            for m in re.finditer(r"\brank (\d+) on host '([^']+)'",
                                 failures[str(r)][2]):
                named, host = int(m.group(1)), m.group(2)
                if host_of.get(named, host) != host:
                    self.finding(
                        row, f"rank {r}'s message names \"rank {named} on "
                        f"host '{host}'\", but world rank {named} runs on "
                        f"{host_of[named]}: the number is a communicator's, "
                        "not the world rank")
        times = [failures[str(r)][0] for r in survivors]
        detection = max(times) - t_inject
        row["detection"] = f"{detection:.2f} s"
        if detection > limit:
            self.fail(f"{job.name}: detection took {detection:.2f} s, over "
                      f"{limit} s")
            row["verdict"].append(f"slow ({detection:.1f} s > {limit} s)")
        for r in survivors:
            t, code, message, _where = failures[str(r)]
            wanted = cause(r) if callable(cause) else cause
            if code != expect_code or not re.search(wanted, message):
                self.fail(f"{job.name}: rank {r} failed with {code}: "
                          f"{message} (wanted {expect_code} matching "
                          f"/{wanted}/)")
                row["verdict"].append(f"rank {r}: cause not named")
        exits = job.exits()
        still = [r for r in survivors if not exits.get(r, "").startswith(
            "exit")]
        if still:
            self.fail(f"{job.name}: ranks {still} did not exit with a failure "
                      f"status ({exits})")
            row["verdict"].append(f"ranks {still} did not exit non-zero")
        if job.rc == 0:
            self.fail(f"{job.name}: kolorun exited 0 after a fatal fault")
            row["verdict"].append("kolorun exit 0")

    def completed_correctly(self, job, row):
        failures = job.failures()
        done = job.done_ranks()
        if failures or len(done) != self.topo.ranks or job.rc != 0:
            self.fail(f"{job.name}: training did not complete: failures "
                      f"{failures}, done ranks {sorted(done)}, exit {job.rc}")
            row["verdict"].append("training failed")
            row["happened"] = "training FAILED: " + "; ".join(
                f"rank {r}: {shorten(f[2])}" for r, f in failures.items())
        else:
            row["happened"] = "no failure: training completed with correct " \
                              "results"
        row["detection"] = "-"

    def reach(self, job, step):
        """Waits until every rank has completed `step`; returns the ranks'
        (pid, host)."""
        if not job.wait_until(job.reached(step), 90):
            self.fail(f"{job.name}: training never reached step {step}")
        return job.pids()

    def abandon(self, job, row):
        """The job went wrong before the fault could be injected."""
        job.finish(60)
        row["happened"] = "the fault could not be injected: " + shorten(
            "; ".join(f"rank {r}: {f[2]}" for r, f in job.failures().items()))
        row["verdict"].append("not injected")
        self.after_run(job, row)

    def victim(self):
        return self.rng.randrange(self.topo.ranks)

    @staticmethod
    def cause_of(victim, host_of):
        """survivor -> what its message must name: the victim's world rank,
        its host, or (for a survivor on the same host) its local rank."""
        host = host_of[victim]
        local = sorted(r for r, h in host_of.items() if h == host).index(victim)

        def cause(survivor):
            names = [rf"(?<!local )\brank {victim}\b"]
            if len(set(host_of.values())) > 1:
                names.append(re.escape(host))
            if host_of[survivor] == host:
                names.append(rf"local rank {local}\b")
            return "|".join(names)
        return cause

    def run_kill(self, stop=False):
        fault = "sigstop" if stop else "sigkill"
        victim = self.victim()
        name = f"{len(self.rows) + 1:02d}-{fault}-rank{victim}"
        row = new_row(self.topo, fault)
        job = self.new_job(name)
        job.start()
        at = self.start_step + self.rng.randint(3, 25)
        timeout = self.args.peer_timeout
        pids = self.reach(job, at)
        if victim not in pids:
            self.abandon(job, row)
            return
        pid, host = pids[victim]
        # Anywhere in the next step: in its computation or its allreduces.
        delay = self.rng.uniform(0, job.step_seconds())
        time.sleep(delay)
        os.kill(pid, signal.SIGSTOP if stop else signal.SIGKILL)
        t_inject = time.time()
        row["injected"] = (f"{'SIGSTOP' if stop else 'SIGKILL'} rank "
                           f"{victim} (host {host}) {delay * 1000:.0f} ms "
                           f"after step {at}")
        survivors = [r for r in range(self.topo.ranks) if r != victim]
        limit = timeout + self.args.margin
        if stop:
            job.wait_until(
                lambda: all(str(r) in job.failures() for r in survivors),
                limit + 10)
            os.kill(pid, signal.SIGKILL)
            row["injected"] += f"; SIGKILL {time.time() - t_inject:.1f} s later"
        job.finish(60)
        host_of = {r: h for r, (_p, h) in pids.items()}
        self.survivors_report(job, survivors, t_inject,
                              self.cause_of(victim, host_of), limit, row)
        if job.hung:
            self.fail(f"{name}: the job hung")
            row["verdict"].append("hang")
        self.after_run(job, row)

    def run_sigkill(self):
        self.run_kill(stop=False)

    def run_sigstop(self):
        self.run_kill(stop=True)

    def run_tcp_junk(self):
        name = f"{len(self.rows) + 1:02d}-tcp-junk"
        row = new_row(self.topo, "tcp-junk")
        # On one host the ring plane, so that kolo's TCP wire-up runs (the
        # shm plane has no listener); on two hosts the hierarchical plane
        # has one across hosts.
        extra = ["--cpu-operations", "ring"] if isinstance(
            self.topo, OneHost) else []
        job = self.new_job(name, kolorun_args=extra)
        stop_file = os.path.join(self.work, name + ".stop")
        probers = []
        for ns in self.topo.namespaces():
            out = os.path.join(self.work, f"{name}-{ns}.json")
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, __file__,
                 "--helper", "probe-tcp", "--out", out, "--stop-file",
                 stop_file, "--pids-from", job.out_path, "--duration", "120",
                 "--period", "0.5", "--seed",
                 str(self.rng.randrange(1 << 30))],
                start_new_session=True)
            Cleanup.processes.append(p)
            probers.append((ns, p, out))
        time.sleep(0.3)  # the probers are looking before kolorun starts
        job.start()
        job.finish(120)
        open(stop_file, "w").close()
        events = []
        for ns, p, out in probers:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
            try:
                with open(out) as f:
                    events += [dict(e, ns=ns) for e in json.load(f)]
            except (OSError, ValueError):
                self.fail(f"{name}: the prober in {ns} wrote nothing")
        ports = {}  # -> (whether a rank's, owner)
        for e in events:
            key = (e["ns"], e["addr"], e["port"])
            rank = e["rank"] or e["owner"].startswith("chaos_worker") or \
                ports.get(key, (False, ""))[0]
            ports[key] = (rank, e["owner"])
        rank_ports = [k for k, (rank, _o) in ports.items() if rank]
        daemons = sorted({re.sub(r"\[\d+\]", "", o)
                          for rank, o in ports.values() if not rank})
        junk = sum(e.get("junk") == "sent" for e in events)
        imp = sum(e.get("impersonate") == "sent" for e in events)
        silent = sum(e.get("silent") == "open" for e in events)
        dropped = len(re.findall(r"tcp transport: dropped a connection",
                                 job.stderr_text()))
        row["injected"] = (
            f"{len(rank_ports)} listening ports of the ranks, "
            f"{len(ports) - len(rank_ports)} of Open MPI's daemons "
            f"({', '.join(daemons) or 'none'}): {junk} junk + {imp} "
            f"impersonating connections, {silent} silent ones to the ranks' "
            f"ports, from before start-up to the end; kolo logged {dropped} "
            "dropped connections")
        if not rank_ports:
            self.fail(f"{name}: no listening port of a rank was reached")
            row["verdict"].append("the ranks' ports never probed")
        elif dropped == 0:
            # kolo's TCP listeners live only while the ranks wire up (closed
            # once every peer is connected): a few milliseconds on one host,
            # longer across two, but even there a probe may miss them (seen
            # in 1 of ~10 two-host runs). runtime.tcp_transport.np2 hits
            # them deterministically with junk, impostors and silence.
            row["injected"] += (" (kolo's own listeners closed before a "
                                "probe reached them)")
        self.completed_correctly(job, row)
        if job.hung:
            row["verdict"].append("hang")
        self.after_run(job, row)

    def run_udp_flood(self):
        name = f"{len(self.rows) + 1:02d}-udp-flood"
        row = new_row(self.topo, "udp-flood")
        job = self.new_job(name)
        job.start()
        at = self.start_step + 5
        self.reach(job, at)
        stop_file = os.path.join(self.work, name + ".stop")
        before = job.step_seconds(last=10)
        t_inject = time.time()
        floods = []
        namespaces = self.topo.namespaces()
        for ns in namespaces:
            out = os.path.join(self.work, f"{name}-{ns}.json")
            peers = ",".join(n for n in namespaces if n != ns)
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, __file__,
                 "--helper", "flood-udp", "--out", out, "--stop-file",
                 stop_file, "--duration", "60", "--ports-dir", self.work,
                 "--name", ns, "--peers", peers, "--addr",
                 self.topo.hosts[ns], "--rate", str(self.args.udp_rate),
                 "--seed", str(self.rng.randrange(1 << 30))],
                start_new_session=True)
            Cleanup.processes.append(p)
            floods.append((ns, p, out))
        job.finish(120)
        open(stop_file, "w").close()
        sent = targets = doorbells = ports = 0
        for ns, p, out in floods:
            try:
                p.wait(timeout=20)
                with open(out) as f:
                    result = json.load(f)
                sent += result["sent"]
                targets += len(result["targets"])
                ports += len(result["sockets"])
                doorbells += sum(o.startswith("chaos_worker")
                                 for _a, _p, o in result["sockets"])
            except (subprocess.TimeoutExpired, OSError, ValueError):
                p.kill()
                self.fail(f"{name}: the flooder in {ns} failed")
        warned = len(re.findall(r"networked doorbell: dropped",
                                job.stderr_text()))
        during = [t for r, t, msg in job.lines()
                  if r == "0" and t > t_inject and re.match(r"step \d+ ", msg)]
        gaps = sorted(b - a for a, b in zip(during, during[1:]))
        step_during = gaps[len(gaps) // 2] if gaps else float("nan")
        flooded = job.ended_at - t_inject
        row["injected"] = (
            f"{sent} datagrams ({sent / max(flooded, 1e-3):.0f}/s) from both "
            f"hosts to every UDP port of the job ({ports}: {doorbells} kolo "
            f"doorbells; {targets} addresses) after step {at}, until the end; "
            f"kolo warned {warned} times that it dropped "
            f"foreign datagrams; median step {before * 1000:.0f} ms before, "
            f"{step_during * 1000:.0f} ms during")
        if targets == 0 or warned == 0:
            self.fail(f"{name}: the flood never reached kolo's doorbells")
            row["verdict"].append("doorbells not flooded")
        self.completed_correctly(job, row)
        self.after_run(job, row)

    def run_link_down(self):
        name = f"{len(self.rows) + 1:02d}-link-down"
        row = new_row(self.topo, "link-down")
        job = self.new_job(name)
        job.start()
        at = self.start_step + self.rng.randint(3, 25)
        pids = self.reach(job, at)
        if len(pids) != self.topo.ranks:
            self.abandon(job, row)
            return
        time.sleep(self.rng.uniform(0, job.step_seconds()))
        self.topo.link(up=False)
        t_inject = time.time()
        limit = self.args.peer_timeout + self.args.margin
        # Every rank has given up by then (what the far host's ranks print
        # reaches mpirun only over the link). Back up, Open MPI's daemons
        # can end the job; a job that still does not end is Open MPI's.
        time.sleep(limit)
        self.topo.link(up=True)
        job.finish(60)
        ended = job.ended_at - t_inject
        row["injected"] = (f"veth link between the hosts down after step "
                           f"{at}, up again {limit:g} s later")
        host_of = {r: h for r, (_p, h) in pids.items()}

        def cause(survivor):
            far = [r for r, h in host_of.items() if h != host_of[survivor]]
            names = [rf"(?<!local )\brank {r}\b" for r in far]
            names += [re.escape(host_of[far[0]])]
            if 0 in far:
                names.append(r"rank 0 \(the coordinator\)")
            return "|".join(names)
        self.survivors_report(job, list(range(self.topo.ranks)), t_inject,
                              cause, limit, row)
        row["happened"] += f"; kolorun ended {ended:.1f} s after the fault"
        if job.hung:
            self.fail(f"{name}: the job hung")
            row["verdict"].append("hang")
        self.after_run(job, row)

    def run_shm_full(self):
        name = f"{len(self.rows) + 1:02d}-shm-full"
        row = new_row(self.topo, "shm-full")
        # Open MPI's own shared memory goes to /tmp, so that it is kolo that
        # meets the full /dev/shm.
        job = self.new_job(name, shm={"size": "16m", "full": True},
                           mpi_args=["--mca", "btl_vader_backing_directory",
                                     "/tmp"])
        job.start()
        t_inject = job.started_at
        job.finish(60)
        row["injected"] = "16 MiB /dev/shm, full before start"
        self.survivors_report(job, list(range(self.topo.ranks)), t_inject,
                              r"/dev/shm", 60, row,
                              expect_code=init_code(job))
        row["detection"] += " after launch"
        if any(w != "in init" for _t, _c, _m, w in job.failures().values()):
            self.fail(f"{name}: a rank failed outside init")
        if job.hung:
            row["verdict"].append("hang")
        self.after_run(job, row)

    def run_shm_fill(self):
        name = f"{len(self.rows) + 1:02d}-shm-fill"
        row = new_row(self.topo, "shm-fill")
        job = self.new_job(name, shm={"size": "64m", "full": False},
                           mpi_args=["--mca", "btl_vader_backing_directory",
                                     "/tmp"])
        job.start()
        at = self.start_step + 5
        self.reach(job, at)
        # kolorun is the first process of the mount namespace's /dev/shm.
        fill = subprocess.run(
            ["nsenter", "-t", str(job.proc.pid), "-m", "sh", "-c",
             "dd if=/dev/zero of=/dev/shm/chaos-fill bs=64k 2>&1; "
             "df -k /dev/shm | tail -1"],
            capture_output=True, text=True, timeout=60)
        m = re.search(r"(\d+) bytes", fill.stdout)
        filled = int(m.group(1)) >> 20 if m else "?"
        free = fill.stdout.strip().splitlines()[-1].split()[3] \
            if fill.stdout.strip() else "?"
        row["injected"] = (f"64 MiB /dev/shm filled during training (after "
                           f"step {at}): {filled} MiB written until ENOSPC, "
                           f"{free} KiB left")
        job.finish(120)
        self.completed_correctly(job, row)
        self.after_run(job, row)

    def run_final_resume(self):
        name = f"{len(self.rows) + 1:02d}-resume"
        row = new_row(self.topo, "none (resume check)")
        job = self.new_job(name, steps=2 * CHECKPOINT_EVERY)
        job.start()
        job.finish(120)
        row["injected"] = f"resume from step {self.start_step}, " \
                          f"{2 * CHECKPOINT_EVERY} more steps"
        self.completed_correctly(job, row)
        self.after_run(job, row)
        row["resumed"] = "-"
        self.pending = []

    def check_validator(self):
        """The checkpoint check must itself catch damage: a flipped bit in
        the parameters or in the header, and a truncated file."""
        files = sorted(f for f in os.listdir(self.checkpoints)
                       if re.fullmatch(r"ckpt-\d+\.kolo", f))
        if not files:
            return
        with open(os.path.join(self.checkpoints, files[-1]), "rb") as f:
            good = f.read()
        damaged = {
            "a flipped parameter bit": bytearray(good),
            "a flipped bit in the step": bytearray(good),
            "a truncated file": bytearray(good[:len(good) // 2]),
        }
        damaged["a flipped parameter bit"][len(good) - 5] ^= 0x10
        damaged["a flipped bit in the step"][16] ^= 0x01
        folder = os.path.join(self.work, "damaged")
        os.makedirs(folder)
        missed = []
        for what, data in damaged.items():
            path = os.path.join(folder, "ckpt-99999999.kolo")
            with open(path, "wb") as f:
                f.write(data)
            r = subprocess.run([self.args.worker, "--check-checkpoint", path],
                               capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                missed.append(what)
        self.validator_note = (
            "the checkpoint check rejected " + ", ".join(damaged)
            if not missed else f"the checkpoint check MISSED {missed}")
        if missed:
            self.fail(self.validator_note)

    def compare_with_reference(self):
        top = max(self.digests, default=0)
        if top == 0:
            return
        r = subprocess.run(
            [self.args.worker, "--reference-ranks", str(self.topo.ranks),
             "--steps", str(top), "--checkpoint-every",
             str(CHECKPOINT_EVERY), "--seed", str(self.data_seed),
             "--batch", str(BATCH)],
            capture_output=True, text=True, timeout=600)
        reference = {int(s): d for s, d in
                     re.findall(r"reference step=(\d+) digest=(\S+)", r.stdout)}
        wrong = [s for s, d in self.digests.items() if reference.get(s) != d]
        self.reference_note = (
            f"{len(self.digests)} checkpoint digests (steps "
            f"{min(self.digests)}-{top}) "
            + ("all equal the one-process reference" if not wrong else
               f"DIFFER from the reference at steps {sorted(wrong)}"))
        log(self.reference_note)
        if wrong:
            self.fail(self.reference_note)

    def run(self, faults):
        self.topo.create()
        for fault in faults:
            if time.time() > self.deadline:
                self.fail(f"the soak's budget of {self.args.budget:g} s ran "
                          f"out before {fault}")
                return
            getattr(self, "run_" + fault.replace("-", "_"))()
        self.run_final_resume()
        self.check_validator()
        for row in self.pending:
            if row["fault"] != "none (resume check)":
                self.fail(f"the checkpoint after {row['fault']} was never "
                          "resumed")
        self.compare_with_reference()


def init_code(job):
    codes = {code for _t, code, _m, _w in job.failures().values()}
    return codes.pop() if len(codes) == 1 else "one status code"


def new_row(topo, fault):
    return {"topology": topo.label(), "fault": fault, "injected": "",
            "happened": "", "detection": "-", "kolorun": "", "checkpoint": "",
            "resumed": "", "verdict": []}


def shorten(text, limit=150):
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def table(rows):
    out = ["| # | topology | fault | injected | what happened | time until "
           "every survivor knew | kolorun exit | last checkpoint | resumed "
           "from it | verdict |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        verdict = "FAIL: " + ", ".join(r["verdict"]) if r["verdict"] else "ok"
        cells = [str(i), r["topology"], r["fault"], shorten(r["injected"], 400),
                 shorten(r["happened"], 400), r["detection"], r["kolorun"],
                 r["checkpoint"], r["resumed"], verdict]
        out.append("| " + " | ".join(c.replace("|", "/") for c in cells) +
                   " |")
    return "\n".join(out)


def can_create_namespaces(work):
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"the {tool} command is not installed"
    probe = f"kolo-{TAG}-p-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True,
                       text=True)
    if r.returncode != 0:
        return f"cannot create network namespaces here ({r.stderr.strip()})"
    try:
        r = subprocess.run(["ip", "netns", "exec", probe, "unshare", "-m",
                            "--uts", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return f"cannot create mount/UTS namespaces ({r.stderr.strip()})"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


TOPOLOGIES = {
    "one-host": (OneHost, ["sigkill", "sigstop", "tcp-junk", "shm-full",
                           "shm-fill", "sigkill"]),
    "two-hosts": (TwoHosts, ["sigkill", "tcp-junk", "udp-flood", "sigstop",
                             "link-down"]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kolorun")
    parser.add_argument("--worker")
    parser.add_argument("--topology", default="all",
                        choices=["one-host", "two-hosts", "all"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--faults",
                        help="comma-separated faults to run instead of the "
                        "topology's list")
    parser.add_argument("--table", help="write the result table here")
    parser.add_argument("--peer-timeout", type=float, default=3)
    parser.add_argument("--margin", type=float, default=3,
                        help="seconds allowed beyond the peer timeout")
    parser.add_argument("--udp-rate", type=int, default=20000,
                        help="datagrams per second from each host")
    parser.add_argument("--budget", type=float, default=330,
                        help="seconds the whole soak may take; every run is "
                        "bounded by what is left")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (logs, checkpoints)")
    # Internal: the helpers that run inside a namespace.
    parser.add_argument("--helper", choices=["probe-tcp", "flood-udp"])
    parser.add_argument("--out")
    parser.add_argument("--stop-file")
    parser.add_argument("--pids-from")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--period", type=float)
    parser.add_argument("--ports-dir")
    parser.add_argument("--name")
    parser.add_argument("--peers")
    parser.add_argument("--addr")
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    if args.helper == "probe-tcp":
        return probe_tcp(args)
    if args.helper == "flood-udp":
        return flood_udp(args)
    if not args.kolorun or not args.worker:
        parser.error("--kolorun and --worker are required")
    args.kolorun = os.path.abspath(args.kolorun)
    args.worker = os.path.abspath(args.worker)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(Cleanup.run)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    log(f"seed {seed} (rerun with --seed {seed})")
    rng = random.Random(seed)
    args.work = tempfile.mkdtemp(prefix="kolo-chaos.")
    if not args.keep:
        atexit.register(shutil.rmtree, args.work, True)
    else:
        log(f"work folder {args.work}")
    remove_stale_namespaces()
    why = can_create_namespaces(args.work)
    if why:
        print(f"SKIP: {why}; needs root or CAP_SYS_ADMIN", flush=True)
        return SKIP

    keys = ["one-host", "two-hosts"] if args.topology == "all" else \
        [args.topology]
    rows, failures, notes, findings = [], [], [], []
    started = args.started = time.time()
    for key in keys:
        topo_class, faults = TOPOLOGIES[key]
        if args.faults:
            faults = args.faults.split(",")
        soak = Soak(args, topo_class(os.path.join(args.work, key)), rng)
        try:
            soak.run(faults)
        finally:
            Cleanup.run()
        rows += soak.rows
        failures += soak.failures
        findings += soak.findings
        notes.append(f"{soak.topo.label()}: "
                     f"{getattr(soak, 'reference_note', 'no checkpoint')}; "
                     f"{getattr(soak, 'validator_note', 'no checkpoint')}")
    elapsed = time.time() - started
    wrong = sum("WRONG" in " ".join(r["verdict"]) for r in rows)
    text = (table(rows) + "\n\n" +
            f"Seed {seed}; KOLO_PEER_TIMEOUT_SECONDS={args.peer_timeout:g}, "
            f"margin {args.margin:g} s; {len(rows)} runs in {elapsed:.0f} s; "
            f"WRONG lines: {wrong}.\n" +
            "".join(f"Checkpoints, {n}.\n" for n in notes))
    if findings:
        text += "Findings (kolo's messages; they do not fail the soak):\n" + \
            "".join(f"- {f}\n" for f in findings)
    print(text, flush=True)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    if failures:
        print(f"FAIL: {len(failures)} assertion(s) failed:", flush=True)
        for f in failures:
            print(f"  - {f}", flush=True)
        return 1
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
