"""The actor pool's bookkeeping (atlas.pipeline.dispatch), with fake actor handles: no Ray cluster."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pytest

from atlas.errors import RunFailed
from atlas.pipeline.dispatch import IN_FLIGHT_PER_ACTOR, _Pool
from atlas.pipeline.plan import plan_shards

pytestmark = pytest.mark.unit


class _Method:
    def __init__(self, counter):
        self.counter = counter

    def remote(self, *args):
        return next(self.counter)  # a stand-in object ref


class _Handle:
    def __init__(self):
        counter = itertools.count()
        self.ready, self.run_shard = _Method(counter), _Method(counter)


def _outstanding(pool: _Pool) -> int:
    return sum(1 for kind, *_ in pool.refs.values() if kind == "shard")


def _pool(shards: int) -> _Pool:
    todo = plan_shards({"fc8": list(range(shards))}, 1)
    return _Pool([_Handle()], todo, 2, 3, 60.0, lambda _r: None, lambda _m: None)


def test_one_death_that_loses_every_shard_in_flight_counts_them_off_once():
    pool = _pool(5)
    slot = pool.slots[0]
    slot.state = "alive"
    pool.fill(slot)
    sent = [(ref, shard) for ref, (kind, _s, _g, shard) in pool.refs.items() if kind == "shard"]
    assert slot.in_flight == len(sent) == IN_FLIGHT_PER_ACTOR
    for ref, shard in sent:  # each lost task reports the same death
        del pool.refs[ref]
        pool._actor_failed(RuntimeError("node died"), "shard", slot, 0, shard)
    assert slot.in_flight == 0 and slot.state == "starting"
    assert [s.id for s in pool.pending][:2] == [shard.id for _r, shard in reversed(sent)]  # re-queued first
    pool._answered({"pid": 2, "node": "n"}, "probe", slot, slot.generation)  # the restarted actor
    assert slot.state == "alive" and _outstanding(pool) == slot.in_flight == IN_FLIGHT_PER_ACTOR


def test_a_worker_lost_with_its_node_is_said_and_counted_when_ray_never_places_it_again(monkeypatch):
    """A node killed under a run: its actor stayed 'starting' to the end, and the run ended with a normal
    summary that never said a worker was lost (a trial). The loss is said as it happens and at the end."""
    from ray.exceptions import ActorUnavailableError

    from atlas.pipeline.dispatch import PoolReport
    from atlas.pipeline.driver import _pool_done

    said = []
    todo = plan_shards({"fc8": list(range(4))}, 1)
    handles, refs = [_Handle(), _Handle()], itertools.count()  # one count: two actors' refs stay apart
    for handle in handles:
        handle.ready = handle.run_shard = _Method(refs)
    pool = _Pool(handles, todo, 2, 3, 60.0, lambda _r: None, said.append)
    lost, other = pool.slots
    for slot, pid in ((lost, 11), (other, 12)):
        pool._answered({"pid": pid, "node": f"n{pid}"}, "probe", slot, 0)
    (ref, (_k, _s, generation, shard)), *_ = [(r, v) for r, v in pool.refs.items() if v[1] is lost]
    del pool.refs[ref]
    pool._actor_failed(ActorUnavailableError("node died", b"\0" * 16), "shard", lost, generation, shard)
    assert lost.state == "starting" and said[-1].startswith("worker 0 (pid 11) was lost (")
    assert said[-1].endswith("waiting for Ray to start it again; the others take its shards")
    pool.pending.clear()
    pool.refs = {r: v for r, v in pool.refs.items() if v[1] is not lost and v[0] != "shard"}
    other.in_flight = 0
    monkeypatch.setattr(pool, "probe", lambda slot: None)  # the run's first probes: long answered here
    assert pool.run().not_back == 1  # it never came back before the run's shards were done
    said.clear()
    _pool_done(PoolReport(requeued=1, not_back=1), None, said.append)
    assert said == [
        "1 worker death(s) survived; 1 shard(s) re-queued",
        "atlas: warning: 1 worker lost during the run had not come back when it ended (restarting, or a node "
        "gone for good: the lines above say which); the others did their shards",
    ]


def test_workers_whose_setup_failed_are_said_once_per_cause_and_end_the_run_when_none_is_left(monkeypatch):
    """A setup that fails in the actors is answered by the probe (Ray printed each constructor's exception
    as a traceback on the driver's console, six lines an actor): a cause is said once however many workers
    give it, the others take the shards, and with none left the run ends with the cause (exit 2; a
    passing cause, exit 1)."""
    import ray

    from atlas.errors import AtlasError

    killed = []
    monkeypatch.setattr(ray, "kill", lambda handle, no_restart: killed.append((handle, no_restart)))
    for passing, raised in ((False, AtlasError), (True, RunFailed)):
        said = []
        handles = [_Handle() for _ in range(3)]
        pool = _Pool(handles, plan_shards({"fc8": [0, 1]}, 1), 2, 3, 60.0, lambda _r: None, said.append)
        first, second, last = pool.slots
        note = "RuntimeError: no driver at nets.py:3 (its traceback: /run/_workers/h-{}.traceback.txt)"
        for slot, pid in ((first, 7), (second, 8)):
            pool._answered(
                {"pid": pid, "setup_error": note.format(pid), "passing": passing}, "probe", slot, 0
            )
        assert (first.state, second.state, last.state) == ("dead", "dead", "starting")
        assert said == [f"worker 0 could not start ({note.format(7)})"]
        with pytest.raises(AtlasError) as caught:
            pool._answered({"pid": 9, "setup_error": note.format(9), "passing": passing}, "probe", last, 0)
        assert (
            type(caught.value) is raised
            and str(caught.value) == f"no atlas worker could start: {note.format(9)}"
        )
        assert pool.report.dead_actors == 3 and pool.report.deaths == 0  # none of them ever ran
        assert killed[-3:] == [
            (h, True) for h in handles
        ]  # ended for good, as Ray ends a raising constructor


def test_a_shard_of_a_reset_slot_that_still_finishes_does_not_free_a_place_twice():
    pool = _pool(4)
    slot = pool.slots[0]
    slot.state = "alive"
    pool.fill(slot)
    (ref, (_k, _s, generation, shard)), *_ = pool.refs.items()
    del pool.refs[ref]
    pool._actor_failed(RuntimeError("unavailable"), "shard", slot, generation, shard)
    pool._answered({"pid": 1, "node": "n"}, "probe", slot, slot.generation)
    old = next(r for r, (kind, _s, g, _sh) in pool.refs.items() if kind == "shard" and g == generation)
    del pool.refs[old]
    pool._answered({"shard": "x"}, "shard", slot, generation)  # sent before the reset, finished after
    assert _outstanding(pool) == slot.in_flight == IN_FLIGHT_PER_ACTOR  # not one more


def test_the_plan_refuses_a_layer_that_cannot_name_files_and_keeps_distinct_names_apart():
    from atlas.errors import ConfigError

    shards = plan_shards({"_fc": [0, 1, 2], "a+b": [0], "a_b": [0]}, 2)  # EfficientNet-PyTorch's "_fc"
    assert [s.id for s in shards] == ["_fc-00000", "_fc-00001", "a+b-00000", "a_b-00000"]
    for bad in ("conv 1", ".hidden", "-x", "a/b", "..", ""):
        with pytest.raises(ConfigError, match=r"^layers: the layer .* cannot name the run's files"):
            plan_shards({bad: [0]}, 2)


def test_an_atlas_error_raised_in_a_shard_reaches_the_user_as_its_own_line():
    """A storage error in a worker (a full disk, an expired credential) is an AtlasError there; Ray wraps it
    in a RayTaskError whose text starts with the task's header, which said nothing about the cause."""
    from ray.exceptions import RayTaskError

    from atlas.errors import AtlasError
    from atlas.pipeline.dispatch import _task_failed

    message = "cannot write s3://b/run/shards/fc8-0000.images.parquet: No space left on device"
    wrapped = RayTaskError(
        "AtlasWorker.run_shard",
        f"Traceback (most recent call last):\n  File x\natlas.errors.AtlasError: {message}",
        AtlasError(message),
        proctitle="ray::AtlasWorker.run_shard()",
        pid=5,
        ip="127.0.0.1",
        actor_repr="<AtlasWorker>",
    )
    with pytest.raises(AtlasError) as raised:
        _task_failed(wrapped, None, None)
    assert str(raised.value) == message
    assert not isinstance(raised.value, RunFailed)  # a user's error keeps exit status 2


def test_failures_outside_the_input_are_run_failures_and_exit_1(monkeypatch, capsys):
    """Every worker dead or a worker crash ends the run with its one line and exit status 1 (run it again),
    apart from bad input's 2 (fix it first), so a script or scheduler can tell them apart."""
    from atlas.cli import main
    from atlas.commands import sql
    from atlas.pipeline.dispatch import _task_failed

    pool = _pool(3)
    slot = pool.slots[0]
    slot.state = "alive"
    with pytest.raises(RunFailed, match=r"^every atlas worker died \(last: node died; ray.max_restarts 2\)"):
        pool._dead(slot, RuntimeError("node died"))
    with pytest.raises(RunFailed, match=r"^shard fc8-00000 failed in the worker: division by zero"):
        _task_failed(ZeroDivisionError("division by zero"), slot, pool.pending[0])
    slot.host, slot.pid = "node-7", 4242  # its log is on its own node, named by its pid (a trial: the
    with pytest.raises(RunFailed, match=r"on node-7, logs/worker-\*-4242\.err in that node's Ray session"):
        _task_failed(ZeroDivisionError("division by zero"), slot, pool.pending[0])  # driver's path said)
    from types import SimpleNamespace

    from atlas.errors import StorageUnreachable

    passing = SimpleNamespace(cause=StorageUnreachable("cannot write s3://b/x: timeout"))
    with pytest.raises(RunFailed, match="^cannot write s3://b/x: timeout$"):  # through Ray: still exit 1
        _task_failed(passing, slot, pool.pending[0])

    def failed(_args):
        raise RunFailed("every atlas worker died (last: node died); rerun the same command to resume")

    monkeypatch.setattr(sql, "run", failed)
    assert main(["sql", "somewhere", "SELECT 1"]) == 1
    assert capsys.readouterr().err == (
        "atlas: error: every atlas worker died (last: node died); rerun the same command to resume\n"
    )


def test_a_live_actor_silent_for_ten_slowest_shards_is_killed_and_its_shards_requeued(monkeypatch):
    """A hung actor (a stopped process, a stuck device) never fails, so Ray never restarts it: the pool
    kills it after ten times the slowest shard (at least STALL_FLOOR_S) of silence."""
    import ray

    from atlas.pipeline.dispatch import STALL_FLOOR_S

    killed = []
    monkeypatch.setattr(ray, "kill", lambda handle, no_restart=True: killed.append((handle, no_restart)))
    pool = _pool(6)
    slot = pool.slots[0]
    pool._answered({"pid": 1, "node": "n"}, "probe", slot, 0)  # alive: two shards sent
    assert slot.in_flight == IN_FLIGHT_PER_ACTOR
    heard = slot.last_answer
    assert pool.stall_limit() is None and pool.stalled(heard + 10 * STALL_FLOOR_S) == []  # no shard done yet
    (ref, (_k, _s, generation, _shard)), *_ = pool.refs.items()
    del pool.refs[ref]
    pool._answered({"seconds": 60.0, "units": 1}, "shard", slot, generation)  # the slowest so far: 60 s
    assert pool.stall_limit() == 600.0
    heard = slot.last_answer
    assert pool.stalled(heard + 599) == [] and pool.stalled(heard + 601) == [slot]
    sent = [(r, s) for r, (kind, _x, _g, s) in list(pool.refs.items()) if kind == "shard"]
    old_generation = slot.generation
    pool._kill_stalled(slot)
    assert killed == [(slot.handle, False)] and pool.report.stalled == 1  # Ray restarts it
    # its shards go back to the queue at once: a kill that does not take (a user's trial: the same pid
    # held them for 7 minutes) must not hold them; the slot waits for its restart's probe
    assert slot.in_flight == 0 and slot.state == "starting" and pool.stalled(slot.last_answer + 1) == []
    assert {s.id for _r, s in sent} <= {s.id for s in pool.pending}
    assert not set(pool.refs) & {r for r, _ in sent}  # no longer awaited: a shard done twice is written once
    assert pool.report.requeued == len(sent) and slot.generation == old_generation + 1
    pool.stall_timeout_s = 30.0  # ray.stall_timeout_s set: it rules
    assert pool.stall_limit() == 30.0


def test_an_idle_worker_that_gets_work_is_not_hung(monkeypatch):
    """Its silence counts from the work it gets: a worker idle for longer than the stall limit was killed as
    hung the moment a re-queued shard reached it (a user's trial, three runs of three)."""
    import time

    pool = _pool(1)
    pool.stall_timeout_s = 20.0
    slot = pool.slots[0]
    pool._answered({"pid": 1, "node": "n"}, "probe", slot, 0)  # alive: the one shard sent
    (ref, (_k, _s, generation, _shard)), *_ = pool.refs.items()
    del pool.refs[ref]
    pool._answered({"seconds": 1.0, "units": 1}, "shard", slot, generation)  # idle now
    slot.last_answer -= 60.0  # a minute idle
    pool.pending.extend(plan_shards({"fc7": [0]}, 1))  # a shard re-queued from another worker
    pool.fill(slot)
    assert slot.in_flight == 1 and pool.stalled(time.monotonic()) == []


def test_progress_off_a_terminal_is_whole_lines_at_a_pace_and_the_last_count_once():
    """A log (ray job logs, CI) gets plain lines, not tqdm's redraws: one at the start, one per interval with
    this run's own estimate of what is left (a resume's earlier shards are not its pace), one at the end."""
    import io

    from atlas.pipeline.progress import LogLines, progress_bar

    log, now = io.StringIO(), [0.0]
    first = progress_bar(10, 0, "demo", log)
    assert isinstance(first, LogLines)  # StringIO is no terminal
    first.close()
    bar = LogLines(100, 40, "demo", log, every_s=30.0, clock=lambda: now[0], ticking=False)
    for t, n in ((10, 10), (31, 10), (40, 5), (95, 35)):
        now[0] = float(t)
        bar.update(n)
    bar.close()
    bar.close()
    lines = log.getvalue().splitlines()[1:]  # the first: progress_bar's own bar
    assert lines == [
        "demo: 40/100 units (40%) after 0:00",
        "demo: 60/100 units (60%) after 0:31, about 1:24 left",  # 10 units in the 21 s since the first
        "demo: 100/100 units (100%) after 1:35",  # said once, though closed twice
    ]
    log, now[0] = io.StringIO(), 0.0  # a minute of start (Ray, models) before the first units: not the pace
    bar = LogLines(100, 0, "demo", log, every_s=5.0, clock=lambda: now[0], ticking=False)
    for t, n in ((60, 10), (70, 10)):
        now[0] = float(t)
        bar.update(n)
    assert log.getvalue().splitlines()[-1] == "demo: 20/100 units (20%) after 1:10, about 1:20 left"


def test_progress_in_a_log_goes_on_while_no_unit_finishes():
    """A first shard can take minutes: the log still says where the run stands every interval."""
    import io
    import time

    from atlas.pipeline.progress import LogLines

    log = io.StringIO()
    bar = LogLines(14, 0, "micro", log, every_s=0.05)
    deadline = time.monotonic() + 60
    while log.getvalue().count("micro: 0/14 units") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    bar.close()
    said = log.getvalue().count("\n")
    assert log.getvalue().count("micro: 0/14 units (0%)") >= 3, log.getvalue()
    bar._ticker.join()  # closed: the ticker ends, and says nothing more
    assert log.getvalue().count("\n") == said


def test_the_unit_count_adds_units_inside_running_shards_and_never_goes_back():
    from atlas.pipeline.progress import UnitCount

    class Bar:
        n = 0

        def update(self, k):
            assert k > 0
            self.n += k

    bar = Bar()
    count = UnitCount(bar)
    count.inside({"a": 3, "b": 1})
    assert bar.n == 4
    count.shard_done("a", 8)  # a's 8 replace its 3
    assert bar.n == 9
    count.inside({"a": 8, "b": 0})  # a stale report of a finished shard; b re-queued, started again
    assert bar.n == 9  # not back to 8
    count.inside({"b": 5})
    assert bar.n == 13
    count.shard_done("b", 8)
    assert bar.n == 16 and count.shown == 16
    UnitCount(None).shard_done("a", 3)  # no bar: counted, nothing shown


def test_a_terminal_without_columns_gets_plain_lines_and_one_with_them_a_bar():
    """A pty started without a size (0 x 0, as some container runners give) drew no bar at all."""
    import fcntl
    import struct
    import termios

    from atlas.pipeline.progress import LogLines, progress_bar

    main, side = os.openpty()
    try:
        with open(side, "w", closefd=False) as stream:
            lines = progress_bar(10, 0, "demo", stream)
            lines.close()  # its ticker thread would write to the closed pty later
            assert isinstance(lines, LogLines)  # a new pty: 0 x 0
            fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            bar = progress_bar(10, 0, "demo", stream)
            assert not isinstance(bar, LogLines) and type(bar).__name__ == "tqdm"
            bar.close()
    finally:
        os.close(side)
        os.close(main)


def test_actors_that_cannot_be_placed_end_the_run_saying_what_each_asks_for(monkeypatch):
    """No actor alive for ray.start_timeout_s: one line that names what an actor asks of a node (a memory
    reservation no node can give waits like a CPU request no node has)."""
    import ray

    monkeypatch.setattr(ray, "wait", lambda refs, num_returns, timeout: ([], refs))  # nobody ever answers
    todo = plan_shards({"fc8": [0, 1]}, 1)
    pool = _Pool([_Handle()], todo, 2, 3, 0.01, lambda _r: None, lambda _m: None, each_actor="1 CPU, 3.8 GB")
    pool.last_alive -= 1.0  # the bound has passed
    with pytest.raises(
        RunFailed, match=r"could not host the actors \(each asks for 1 CPU, 3.8 GB\) \(see ray"
    ):
        pool.run()
    with pytest.raises(RunFailed, match=r"\(1 waiting to be placed or restarted\); the cluster"):  # no "dead"
        _Pool([_Handle()], todo, 2, 3, 0.0, lambda _r: None, lambda _m: None).run()
    hung = _Pool([_Handle()], todo, 2, 3, 0.01, lambda _r: None, lambda _m: None, each_actor="1 CPU, 3.8 GB")
    # its one actor was killed as hung, and never came back
    hung.report.stalled, hung.stall_timeout_s = 1, 20.0
    hung.last_alive -= 1.0
    said = r"1 worker killed as hung \(answered nothing for 20 s\) has not come back: see the Ray logs of its"
    with pytest.raises(RunFailed, match=said):
        hung.run()


def test_the_driver_reads_the_holders_counts_without_waiting(monkeypatch):
    """Each poll of the pool: one question to the holder in flight; its answer is used at a later poll, and
    a poll whose answer has not come does not wait for it."""
    import ray

    from atlas.pipeline.driver import _ReportsInside

    answers, asked, used = iter([{"a": 2}, {"a": 5, "b": 1}]), [], []

    class Holder:
        class progress:  # noqa: N801 - the actor method's name
            @staticmethod
            def remote():
                asked.append(next(answers))
                return len(asked) - 1  # a stand-in object ref

    arrived: set[int] = set()
    monkeypatch.setattr(ray, "wait", lambda refs, timeout: ([r for r in refs if r in arrived], []))
    monkeypatch.setattr(ray, "get", lambda ref: asked[ref])
    poll = _ReportsInside(Holder(), used.append)
    poll()  # asks
    poll()  # no answer yet: nothing used, not asked again
    assert len(asked) == 1 and used == []
    arrived.add(0)
    poll()  # the answer is used and the next question sent
    assert used == [{"a": 2}] and len(asked) == 2


def test_a_worker_whose_setup_raises_says_what_and_where_in_one_line(tmp_path):
    """A network that fails in the workers only (a user's trial: ~50 lines of traceback forwarded by Ray,
    twice, and a last line without the place): the worker raises one line, ``Type: message at
    file:line``, and keeps the whole traceback in a file of the run's (every node reaches it)."""
    from pathlib import Path

    from atlas.config import config_from_dict
    from atlas.errors import WorkerSetupError
    from atlas.pipeline.dispatch import cause_line
    from atlas.pipeline.worker import AtlasWorker

    cfg = config_from_dict(
        {
            "name": "t",
            "models": {
                "target": "python:tests.unit.byo_factories:breaks_in_forward",
                "allow_random_weights": True,
            },
            "layers": [{"name": "body.fc8"}],
            "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 1, "start": "random"},
            "facets": {"real_images": None},
        }
    )
    with pytest.raises(WorkerSetupError) as caught:
        AtlasWorker(cfg.to_dict(), str(tmp_path / "run"), threads=1)
    said = str(caught.value)
    assert said.startswith("ValueError: boom in forward at byo_factories.py:") and "\n" not in said
    kept = Path(said.rsplit("(its traceback: ", 1)[1].rstrip(")"))
    assert (
        kept.parent == tmp_path / "run" / "_workers"
        and 'raise ValueError("boom in forward")' in kept.read_text()
    )
    kept_back = AtlasWorker(cfg.to_dict(), str(tmp_path / "run"), threads=1, report_setup_failure=True)
    answer = kept_back.ready()  # as the driver's actors: told by the probe, not raised by the constructor
    assert answer["setup_error"].startswith("ValueError: boom in forward at byo_factories.py:")
    assert answer["passing"] is False and answer["pid"] == os.getpid()
    with pytest.raises(WorkerSetupError):
        kept_back.run_shard({"id": "body.fc8-00000", "layer": "body.fc8", "units": [0]})
    ray_text = 'Traceback (most recent call last):\n  File "/x/ray/worker.py", line 9, in f\n  File ' + (
        '"/home/u/my_models.py", line 12, in forward\nValueError: bad shape'
    )  # a Ray error's text: the driver's line names the last frame
    assert cause_line(Exception(ray_text)) == "ValueError: bad shape at my_models.py:12"


def test_a_shard_the_store_did_not_take_for_a_passing_reason_is_done_again():
    """A 12 s stall of the object store ended a user's whole run: a write that fails for a reason that passes
    (StorageUnreachable) sends the shard back to the queue, within ray.max_shard_retries; a refusal (a full
    disk, denied credentials) still ends the run with its own line."""
    from ray.exceptions import RayTaskError

    from atlas.errors import AtlasError, StorageUnreachable

    def failed(cause):
        return RayTaskError("AtlasWorker.run_shard", "Traceback ...", cause, proctitle="x", pid=5, ip="h")

    logs = []
    pool = _pool(2)
    pool.log = logs.append
    slot = pool.slots[0]
    pool._answered({"pid": 1, "node": "n"}, "probe", slot, 0)  # alive: both shards sent
    (ref, (_k, _s, generation, shard)), *_ = pool.refs.items()
    del pool.refs[ref]
    message = "cannot write s3://b/run/units/x.parquet: curlCode: 28, Timeout was reached"
    assert pool._write_failed(failed(StorageUnreachable(message)), slot, generation, shard)
    sent = [s for kind, _x, _g, s in pool.refs.values() if kind == "shard"]
    assert shard in sent and slot.in_flight == IN_FLIGHT_PER_ACTOR  # back in the queue, and sent again
    assert logs == [f"shard {shard.id}: {message}; done again (attempt 2 of 4)"]
    assert not pool._write_failed(
        failed(AtlasError("cannot write x: No space left on device")), slot, 0, shard
    )
    for _ in range(2):
        pool._requeue(shard, StorageUnreachable(message))
    with pytest.raises(RunFailed, match=f"shard {shard.id} was lost 4 times .the last time: cannot write"):
        pool._requeue(shard, StorageUnreachable(message))


def test_which_storage_errors_pass():
    import errno

    from atlas.uri_filesystem import passing_storage_error

    assert passing_storage_error(OSError("AWS Error NETWORK_CONNECTION during PutObject: curlCode: 28"))
    assert passing_storage_error(OSError("When uploading part: AWS Error SLOW_DOWN (SlowDown)"))
    assert passing_storage_error(OSError(errno.ETIMEDOUT, "Connection timed out"))
    assert not passing_storage_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not passing_storage_error(OSError("AWS Error ACCESS_DENIED during PutObject"))
    assert not passing_storage_error(OSError("Bucket 'nope' not found"))


def test_a_store_write_that_times_out_raises_the_passing_kind(tmp_path):
    from atlas.errors import AtlasError, StorageUnreachable
    from atlas.store.location import Location

    class Stalled:
        def open_output_stream(self, _path):
            raise OSError("AWS Error NETWORK_CONNECTION during CreateMultipartUpload: curlCode: 28, Timeout")

    class Full:
        def open_output_stream(self, _path):
            raise OSError(28, "No space left on device")

    loc = Location(str(tmp_path))
    loc.local = False
    loc._fs = Stalled()
    with pytest.raises(StorageUnreachable, match="cannot write .*curlCode: 28"):
        loc.write_bytes("x.json", b"{}")
    loc._fs = Full()
    with pytest.raises(AtlasError, match="No space left") as raised:
        loc.write_bytes("x.json", b"{}")
    assert not isinstance(raised.value, StorageUnreachable)


def _worker_config():
    """A run of a small python: target by the pixel method: an AtlasWorker builds it in a moment."""
    from atlas.config import config_from_dict

    return config_from_dict(
        {
            "name": "t",
            "models": {"target": "python:tests.unit.byo_factories:good", "allow_random_weights": True},
            "layers": [{"name": "fc8"}],
            "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 1, "start": "random"},
            "facets": {"real_images": None},
        }
    )


def test_a_worker_whose_writes_read_back_otherwise_is_refused_before_any_shard(tmp_path, monkeypatch):
    """A node that reads the run but cannot write it whole (a read-only role; moto kept unsigned uploads
    framed) passed the start-up check, which read run.json only: the run finished with unreadable markers."""
    from atlas.errors import AtlasError
    from atlas.pipeline.worker import AtlasWorker
    from atlas.store.location import Location

    cfg = _worker_config()
    AtlasWorker(cfg.to_dict(), str(tmp_path / "fine"), threads=1)  # a store that keeps what it is given
    plain = Location.read_bytes
    monkeypatch.setattr(Location, "read_bytes", lambda self, rel: b"3DF\r\n" + plain(self, rel))
    monkeypatch.setattr("atlas.pipeline.worker.TOKEN_RETRY_S", (0.01,))  # read again once, soon
    with pytest.raises(AtlasError, match=r"out_dir: this worker wrote \d+ bytes to .* reads back \d+ other"):
        AtlasWorker(cfg.to_dict(), str(tmp_path / "framed"), threads=1)


def test_a_worker_that_finds_another_runs_run_json_refuses_to_start(tmp_path, monkeypatch):
    """Two drivers started on one object-store run in the same second, or nodes that see different storage:
    the run.json a worker finds holds another token than its driver's. One line, nothing written."""
    from atlas.errors import AtlasError
    from atlas.pipeline.worker import AtlasWorker
    from atlas.store import RunStore

    cfg = _worker_config()
    RunStore(tmp_path / "seen").init_run({"config": cfg.to_dict(), "config_hash": "x", "run_token": "abc"})
    monkeypatch.setattr("atlas.pipeline.worker.TOKEN_RETRY_S", (0.01,))  # read again once, soon
    with pytest.raises(AtlasError) as caught:
        AtlasWorker(cfg.to_dict(), str(tmp_path / "seen"), 1, None, "the driver's")
    message = str(caught.value)
    assert message.startswith("out_dir: this worker finds another run's run.json at ") and "\n" not in message
    assert "every node must reach out_dir" in message and not (tmp_path / "seen" / "units").exists()


def test_workers_that_ended_dead_are_said_at_the_end_of_a_run_that_finished():
    """A node that could not see the run, or one lost for good: the others finished the run, and the end
    of its output said nothing of the actors it lacked (a user's trial)."""
    from atlas.pipeline.dispatch import PoolReport
    from atlas.pipeline.driver import _pool_done

    said = []
    _pool_done(PoolReport(dead_actors=1), None, said.append)
    assert said == [
        "atlas: warning: 1 worker ended dead (their lines above say why); the others did their shards"
    ]
    said.clear()
    _pool_done(PoolReport(), None, said.append)
    assert said == []


def test_an_interrupt_python_dropped_is_raised_at_the_next_check(capsys):
    """A user's trial: Ctrl-C while Ray started its processes landed in an at-fork callback, where Python
    prints "Exception ignored in: <function _releaseLock ...> KeyboardInterrupt" and drops it: the whole run
    went on. The guard records the signal; the driver's next check raises it, and the dropped one is not
    printed."""
    import signal
    import sys
    import types

    from atlas.errors import Terminated
    from atlas.pipeline.cluster import stop_on_sigterm

    before_int, before_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    guard = stop_on_sigterm(checked=True)
    try:
        guard.check()  # nothing came: nothing raised
        try:  # what Python does with an exception raised inside an at-fork callback
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt as exc:
            sys.unraisablehook(types.SimpleNamespace(exc_value=exc, exc_type=type(exc), exc_traceback=None,
                                                     err_msg=None, object=None))  # fmt: skip
        assert capsys.readouterr().err == ""  # not printed: check() raises it
        with pytest.raises(KeyboardInterrupt):
            guard.check()
        guard.interrupted, guard.received = False, True
        with pytest.raises(Terminated):
            guard.check()
    finally:
        guard.restore()
    assert signal.getsignal(signal.SIGINT) is before_int and sys.unraisablehook is before_hook


def test_the_pool_raises_a_dropped_interrupt_at_its_next_poll(monkeypatch):
    """The driver's on_poll carries its guard's check (driver._Polled): a Ctrl-C Python dropped ends the
    pool's loop at the next poll, not after the whole run."""
    import ray

    from atlas.pipeline.cluster import SigtermGuard
    from atlas.pipeline.driver import _Polled

    monkeypatch.setattr(ray, "wait", lambda refs, num_returns, timeout: ([], refs))  # nobody answers yet
    guard = SigtermGuard.__new__(SigtermGuard)  # its flags only: no handler installed in the test
    guard.received, guard.interrupted = False, True
    polled = []
    todo = plan_shards({"fc8": [0, 1]}, 1)
    pool = _Pool([_Handle()], todo, 2, 3, 60.0, lambda _r: None, lambda _m: None,
                 on_poll=_Polled([lambda: polled.append(1), guard.check]))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        pool.run()
    assert polled == [1]  # at the first poll


def test_a_signal_that_ray_s_start_holds_ends_the_process_and_what_it_started(tmp_path):
    """A SIGTERM to the whole process group ended the local GCS too, and `ray.init` then waited 30 s inside
    one C++ call, where no Python handler runs (a trial). The guard's escape reads the signal from the
    wakeup pipe in a thread: ``escape_s`` later it says so, kills the processes the start began, exits 143.
    Here the main thread cannot act on the signal (its handler does nothing) and a child stands for Ray's."""
    import subprocess
    import sys
    import time

    script = tmp_path / "stuck.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "from atlas.pipeline.cluster import stop_on_sigterm\n"
        "guard = stop_on_sigterm(checked=True, escape_s=0.5)\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)  # the main thread held elsewhere\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parents[2])  # fmt: skip
    child = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 143  # the script itself ends in 30 s (exit 0) if nothing escapes
    assert proc.stderr.read() == "atlas: interrupted (while Ray was starting)\n"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and _state(child) != "Z" and time.monotonic() < deadline:
        time.sleep(0.1)  # killed: gone, or a zombie until init reaps it
    assert not Path(f"/proc/{child}").exists() or _state(child) == "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_settled_escape_puts_the_wakeup_pipe_back_and_reads_no_later_file(tmp_path):
    """Once Ray's start is over the escape is gone: the wakeup descriptor is the one before, its thread has
    ended, and it reads nothing of a file opened next (closed under its waiting read, the pipe's number went
    to the next file opened, whose first 64 bytes it took: a test's config file came out truncated)."""
    import threading

    from atlas.pipeline.cluster import stop_on_sigterm

    text = "x: 1\n" * 100
    (tmp_path / "c.yaml").write_text(text)
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    for _ in range(50):
        guard = stop_on_sigterm(checked=True, escape_s=5.0)
        guard.restore()  # the driver's path when the start raised; settle() alone when it returned
        assert (tmp_path / "c.yaml").read_text() == text
    assert signal.set_wakeup_fd(before) == before
    assert not [t for t in threading.enumerate() if t.name == "atlas-start-escape"]


def test_an_error_is_placed_at_the_users_line_not_torchs_nor_the_standard_librarys():
    """A forward that failed inside torch was placed at torch's linear.py (a trial); a network installed
    as a package under a pyenv / conda Python (its site-packages inside the standard library's folder) was
    never named (a review)."""
    import sysconfig

    from atlas.errors import raised_at

    stdlib = sysconfig.get_paths()["stdlib"]

    def chain(*files: str) -> BaseException:
        """An exception raised through one frame of each of ``files`` (outermost first)."""
        namespace: dict = {}
        for i, name in enumerate(reversed(files)):
            body = "raise RuntimeError('mat1 and mat2')" if i == 0 else f"return f{i - 1}()"
            exec(compile(f"def f{i}():\n    {body}\n", name, "exec"), namespace)
        try:
            namespace[f"f{len(files) - 1}"]()
        except RuntimeError as exc:
            return exc
        raise AssertionError("nothing raised")

    user = f"{stdlib}/site-packages/mynets/net.py"  # installed into a pyenv Python
    exc = chain(
        user, "/venv/lib/python3.11/site-packages/torch/nn/modules/linear.py", f"{stdlib}/functools.py"
    )
    assert raised_at(exc) == " at net.py:2"
    assert raised_at(chain(f"{stdlib}/json/decoder.py")).startswith(" at test_dispatch.py:")  # its caller
    assert raised_at(RuntimeError("never raised")) == ""


def test_a_run_stopped_by_a_full_disk_says_how_to_go_on_and_what_its_run_json_says():
    """A trial filled the disk mid-run: exit 2, `cannot write ...: No space left on device`, and run.json
    still `running` (marking it incomplete needed space too) with nothing said about either."""
    from atlas.errors import AtlasError
    from atlas.pipeline.driver import _stopped

    class Lock:
        held = True

    class Store:
        def __init__(self, fails: bool) -> None:
            self.fails, self.marked = fails, []

        def mark_interrupted(self, status: str = "interrupted") -> None:
            if self.fails:
                raise OSError(28, "No space left on device")
            self.marked.append(status)

    full = "cannot write runs/demo/units/x.parquet: [Errno 28] No space left on device"
    store = Store(fails=True)
    said = str(_stopped(store, Lock(), 4, AtlasError(full)))
    assert said.startswith(full) and "the same `atlas run` resumes" in said
    assert "run.json could not be marked incomplete either and still says running" in said
    store = Store(fails=False)
    other = _stopped(store, Lock(), 4, AtlasError("models.target: boom"))
    assert str(other) == "models.target: boom" and store.marked == ["incomplete"]  # said as it was
