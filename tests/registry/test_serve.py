"""The HTTP service on loopback: concurrent predictions during several hot swaps, with zero
failed requests and every answer computed by exactly one registered version."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fusion.registry import Registry, RegistryCorruptError
from fusion.registry.predict import Predictor
from fusion.registry.serve import ModelServer, create_app, serve_in_thread, sites_from_tags
from fusion.registry.students import load_registered, register_student
from tests.registry.conftest import train_student
from tests.registry.site_data import imu_cases
from tests.threads import one_thread

VERSIONS = ("1.0.0", "1.1.0", "1.2.0")


@pytest.fixture(scope="module")
def registry(general_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Three versions of ``imu`` with different weights (seeds); 1.0.0 tagged site:highway-3."""
    reg = Registry(tmp_path_factory.mktemp("serve") / "reg", create=True)
    for seed, version in enumerate(VERSIONS):
        student = train_student(general_data, seed=seed, steps=20)
        register_student(reg, "imu", student, version=version)
    reg.set_tag("imu:1.0.0", "site:highway-3")
    reg.promote("imu:1.2.0", "production")
    return reg


def _inputs(n: int = 6) -> list[dict[str, Any]]:
    cases, _ = imu_cases(2, seed=11)
    return [
        {"accelerometer": c[:3].tolist(), "gyroscope": c[3:].tolist()}
        if i % 3
        else {"gyroscope": c[3:].tolist()}  # a sensor switched off
        for i, c in enumerate(cases[:n])
    ]


def test_hot_swaps_under_load(registry: Registry) -> None:
    inputs = _inputs()
    with one_thread():
        expected = {}
        for v in VERSIONS:
            mv, student = load_registered(registry, f"imu:{v}")
            pred = Predictor(student, mv.ref)
            expected[mv.ref] = [pred.predict(x)["scores"] for x in inputs]
    assert len({str(s) for s in expected.values()}) == 3  # the versions answer differently

    server = ModelServer(registry)
    assert sites_from_tags(registry) == {"highway-3": "imu:1.0.0"}
    server.swap("highway-3", "imu:1.0.0")
    answers: list[tuple[int, int, dict[str, Any]]] = []
    errors: list[str] = []
    done = threading.Event()

    def client(worker: int) -> None:
        with httpx.Client(timeout=30.0) as http:
            i = worker
            while not done.is_set():
                k = i % len(inputs)
                try:
                    r = http.post(f"{url}/predict/highway-3", json={"inputs": inputs[k]})
                    answers.append((r.status_code, k, r.json()))
                except httpx.HTTPError as err:  # a dropped connection counts as a failure
                    errors.append(repr(err))
                i += 1

    swaps = ["imu:1.1.0", "imu@production", "imu:1.0.0", "imu:1.2.0", "imu:1.1.0", "imu:1.0.0"]
    with one_thread(), serve_in_thread(create_app(server)) as url:
        workers = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        seen_during = []
        with httpx.Client(timeout=30.0) as http:
            for ref in swaps:
                time.sleep(0.4)
                r = http.post(f"{url}/swap/highway-3", json={"ref": ref})
                assert r.status_code == 200, r.text
                seen_during.append(r.json()["to"])
            time.sleep(0.4)
            # Bad input gets a named error and changes nothing.
            r = http.post(f"{url}/swap/highway-3", json={"ref": "imu:9.9.9"})
            assert r.status_code == 404 and r.json()["error"] == "UnknownVersionError"
            r = http.post(f"{url}/predict/depot", json={"inputs": inputs[0]})
            assert r.status_code == 404 and r.json()["error"] == "UnknownSiteError"
            r = http.post(f"{url}/predict/highway-3", json={"inputs": {"magnetometer": [[0.0]]}})
            assert r.status_code == 422 and r.json()["error"] == "StudentInputError"
            assert http.get(f"{url}/health").json()["sites"] == {"highway-3": "imu:1.0.0"}
        done.set()
        for w in workers:
            w.join(30)

    assert seen_during == [
        "imu:1.1.0",
        "imu:1.2.0",
        "imu:1.0.0",
        "imu:1.2.0",
        "imu:1.1.0",
        "imu:1.0.0",
    ]
    assert not errors, errors[:3]
    failed = [(s, a) for s, _, a in answers if s != 200]
    assert not failed, failed[:3]
    assert len(answers) >= 40
    for _, k, answer in answers:
        # Bit for bit the answer of the version it names: never a mix of two.
        assert answer["scores"] == expected[answer["model"]][k]
        assert answer["site"] == "highway-3"
    answered_by = {a["model"] for _, _, a in answers}
    assert answered_by == set(expected), answered_by  # every version served some requests
    print(f"{len(answers)} requests, 0 failed, {len(swaps)} swaps, answered by {answered_by}")


def test_failed_swap_keeps_the_old_model(registry: Registry) -> None:
    server = ModelServer(registry, engine="float")
    server.swap("lab", "imu:1.0.0")
    mv = registry.get("imu", "1.1.0")
    blob = registry.blobs.path(mv.files["weights.pt"][0])
    original = blob.read_bytes()
    blob.chmod(0o644)
    blob.write_bytes(original[:-10])  # damaged on disk
    try:
        with pytest.raises(RegistryCorruptError, match="altered"):
            server.swap("lab", "imu:1.1.0")
    finally:
        blob.write_bytes(original)
    assert server.sites() == {"lab": "imu:1.0.0"}
    answer = server.predict("lab", _inputs(1)[0])
    assert answer["model"] == "imu:1.0.0" and np.isclose(sum(answer["scores"]), 1.0)


def test_in_flight_request_finishes_on_the_old_model(registry: Registry) -> None:
    server = ModelServer(registry)
    server.swap("lab", "imu:1.0.0")
    old = server.predictor("lab")
    entered, release = threading.Event(), threading.Event()
    original = old.predict

    def slow(inputs: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return original(inputs)

    old.predict = slow  # type: ignore[method-assign,assignment]
    x = _inputs(1)[0]
    result: list[dict[str, Any]] = []
    request = threading.Thread(target=lambda: result.append(server.predict("lab", x)))
    request.start()
    assert entered.wait(30)
    assert server.swap("lab", "imu:1.1.0")["from"] == "imu:1.0.0"  # while the request runs
    assert server.predict("lab", x)["model"] == "imu:1.1.0"
    release.set()
    request.join(30)
    assert result[0]["model"] == "imu:1.0.0"
