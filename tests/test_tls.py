"""A TLS-secured Dask cluster on 127.0.0.1 (real `dask scheduler` / `dask worker` processes,
certificates from `python -m helpers tls-certificates`'s openssl command) runs a sweep, and
refuses a client without the cluster's certificate: plain TCP, or TLS with a certificate of its own."""
import shutil
from pathlib import Path

import pytest

from helpers.study import sweep
from helpers.study.executors import TLSFiles, check_address, make_certificates, make_executor
from helpers.study.records import load_records

distributed = pytest.importorskip("distributed")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]

from test_dask import Cluster  # noqa: E402 (after the skip for a missing distributed)

DATA = Path(__file__).parent / "data"
REFUSAL = (OSError, TimeoutError)  # refused handshake: Dask retries until its connect timeout


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> TLSFiles:
    return make_certificates(tmp_path_factory.mktemp("certs"), days=1)


@pytest.fixture(scope="module")
def secured(tmp_path_factory, request, certificates):
    running = Cluster(tmp_path_factory.mktemp("dask-tls"))
    request.addfinalizer(running.down)
    running.up(1, tls=certificates)
    return running


def test_secured_cluster_runs_a_sweep(secured, certificates, tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    status = sweep.run_study(notebooks=["sweep_probe"], notebooks_dir=DATA, scenarios=["standard"],
                             overrides={"seeds": [0, 1], "epochs": 1, "train_fraction": 0.02},
                             scheduler=secured.address, tls=certificates, runs_dir=str(runs),
                             output_dir=out, progress=False)
    assert status == 0, sorted(p.name for p in out.iterdir())
    frame = load_records(runs)
    assert frame["run_id"].nunique() == 2 and set(frame["status"]) == {"finished"}
    tasks = secured.client.run_on_scheduler(
        lambda dask_scheduler: sum(sum(p.state_counts.values()) for p in dask_scheduler.task_prefixes.values()))
    assert tasks >= 1  # the runs went through the cluster


def test_client_without_the_clusters_certificate_is_refused(secured, tmp_path):
    plain = secured.address.replace("tls://", "tcp://")
    with pytest.raises(REFUSAL):
        distributed.Client(plain, timeout="5s", set_as_default=False)
    stranger = make_certificates(tmp_path / "stranger", days=1, name="stranger")
    with pytest.raises(REFUSAL):
        distributed.Client(secured.address, timeout="5s", set_as_default=False,
                           security=stranger.security())
    with pytest.raises(ValueError, match="uses TLS: give --tls-ca-file"):
        with make_executor(secured.address):
            pass


def test_tls_settings_are_checked_before_connecting(certificates, tmp_path, monkeypatch, capsys):
    for variable in ("FMNIST_DASK_TLS_CA_FILE", "FMNIST_DASK_TLS_CERT", "FMNIST_DASK_TLS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValueError, match=r"missing: --tls-key \(\$FMNIST_DASK_TLS_KEY\)"):
        TLSFiles.from_options(certificates.ca_file, certificates.cert)
    with pytest.raises(ValueError, match="not found: key="):
        TLSFiles.from_options(certificates.ca_file, certificates.cert, str(tmp_path / "nokey.pem"))
    with pytest.raises(ValueError, match="is not TLS but TLS files are given"):
        with make_executor("tcp://127.0.0.1:1", tls=certificates):
            pass
    monkeypatch.setenv("FMNIST_DASK_TLS_KEY", certificates.key)
    assert TLSFiles.from_options(certificates.ca_file, certificates.cert) == certificates
    assert Path(certificates.key).stat().st_mode & 0o077 == 0  # the key is private
    monkeypatch.delenv("FMNIST_DASK_TLS_KEY")
    assert check_address("10.1.2.3:8786", None) == "tcp://10.1.2.3:8786"
    assert "unencrypted Dask scheduler beyond this machine" in capsys.readouterr().err
    assert check_address("tcp://127.0.0.1:8786", None) == "tcp://127.0.0.1:8786"
    assert capsys.readouterr().err == ""
