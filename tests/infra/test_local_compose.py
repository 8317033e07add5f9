"""Local Docker setup: the compose file wires the S3 endpoint override; seeding works on moto."""
from __future__ import annotations

import yaml

from infra_helpers import ROOT

from headstart.infra import local_s3
from headstart.shared.storage.store import open_store


def test_compose_runs_the_image_beside_a_moto_server():
    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["s3"]["image"].startswith("motoserver/moto:")
    job = services["headstart"]
    assert job["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (ROOT / "infra" / job["build"]["context"] / "Dockerfile").resolve().is_file()
    assert job["environment"]["HEADSTART_S3_ENDPOINT"] == "http://s3:5000"
    assert "s3" in job["depends_on"]
    gpu = yaml.safe_load((ROOT / "infra" / "compose.gpu.yaml").read_text())
    assert gpu["services"]["headstart"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_seed_creates_the_bucket_and_uploads_a_folder(moto_server, tmp_path):
    (tmp_path / "flowers" / "daisy").mkdir(parents=True)
    (tmp_path / "flowers" / "daisy" / "1.jpg").write_bytes(b"x")
    assert local_s3.main(["seeded", str(tmp_path), "s3://seeded/datasets"]) == 0
    assert local_s3.main(["seeded"]) == 0  # idempotent
    assert list(open_store("s3://seeded/datasets").list()) == ["flowers/daisy/1.jpg"]
    assert local_s3.main(["seeded", str(tmp_path / "missing"), "s3://seeded/x"]) == 2
    assert local_s3.main([]) == 2
