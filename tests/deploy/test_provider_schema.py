"""Every argument and block the Terraform sets exists in the google provider's schema; and `terraform fmt`.

`terraform validate` would catch a misspelt argument, but it needs the provider binary, which cannot
be fetched here. The schema comes instead from @cdktf/provider-google (bindings generated from
hashicorp/google; see provider_schema.py), and every name in every google_* resource and data block
is looked up in it, through nested blocks and `dynamic` blocks' content. Terraform's meta-arguments
(count, for_each, depends_on, lifecycle, provider) are allowed at the top of a block.

What this does not check: resources of other providers (data.archive_file: the package holds only
google's schema); argument values and types; which arguments are required. Resources on the
google-beta provider are checked against the GA schema, so a beta-only argument would be reported
(none is used today: the job's gpu_zonal_redundancy_disabled is GA in 6.50.0).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.deploy.conftest import PROVIDER_GOOGLE, REPO, TF_FILES, Terraform, find_package, find_tool
from tests.deploy.provider_schema import Report, SchemaIndex, google_blocks

INSTALL_TOOLS = REPO / "scripts" / "install_tools.sh"
# Names checked in the .tf files today: 258 in 34 blocks. Far fewer means blocks went unread.
MIN_NAMES_CHECKED = 240


@pytest.fixture(scope="session")
def schema_index() -> SchemaIndex:
    """The package at the version install_tools.sh pins; each type's schema is parsed once, on first use."""
    pinned = re.search(r"^provider_google_version=(\S+)", INSTALL_TOOLS.read_text(), re.M)
    assert pinned, f"{INSTALL_TOOLS.name} pins no provider_google_version"
    return SchemaIndex(find_package("@cdktf/provider-google", PROVIDER_GOOGLE, pinned[1]))


def check(paths: list[Path], index: SchemaIndex) -> Report:
    report = Report()
    for block in google_blocks(paths):
        report.check(block, index)
    return report


def test_every_google_argument_in_the_tf_files_is_in_the_provider_schema(schema_index: SchemaIndex, tf: Terraform):
    blocks = google_blocks(TF_FILES)
    google = {key for key in tf.resources if key[0].startswith("google_")}
    google_data = {key for key in tf.data if key[0].startswith("google_")}
    assert {(b.type, b.name) for b in blocks if b.kind == "resource"} == google, "blocks missed by the check"
    assert {(b.type, b.name) for b in blocks if b.kind == "data"} == google_data, "data blocks missed by the check"
    assert len(google) >= 30

    report = check(TF_FILES, schema_index)

    assert report.problems == [], "\n".join(report.problems)
    assert report.checked >= MIN_NAMES_CHECKED, f"only {report.checked} names checked"


JOB = """resource "google_cloud_run_v2_job" "worker" {
  name     = "job"
  location = "europe-west1"
  template {
    template {
      max_retries = 1
      containers {
        image = "image"
        dynamic "env" {
          for_each = {}
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }
}
"""


@pytest.mark.parametrize(
    ("original", "broken", "expected"),
    [
        ("max_retries", "max_retriess", "template.template.max_retriess is not an argument of the provider's schema"
         "; nearest: max_retries"),
        ("image", "imagee", "template.template.containers.imagee is not an argument of the provider's schema"
         "; nearest: image"),
        ('dynamic "env"', 'dynamic "envv"', 'template.template.containers.dynamic "envv" labels no block of the'
         " provider's schema; nearest: env"),
        ("name  = env.key", "nam = env.key", 'template.template.containers.dynamic "env".content.nam is not an'
         " argument of the provider's schema; nearest: name"),
        ("for_each = {}", "for_eachh = {}", 'template.template.containers.dynamic "env".for_eachh is not an argument'
         " of a dynamic block; nearest: for_each"),
        # Computed only: the provider sets it, and Terraform refuses it in configuration too.
        ('name     = "job"', 'uid      = "job"', "uid is not an argument of the provider's schema; nearest: id"),
        # Meta-arguments belong to the resource, not to its blocks.
        ("max_retries = 1", "count = 1", "template.template.count is not an argument of the provider's schema"),
        ("max_retries = 1", 'node_selector = { accelerator = "nvidia-l4" }',
         "template.template.node_selector is a block: write `node_selector { ... }`, not `node_selector = ...`"),
        ("max_retries = 1", 'timeout { seconds = 60 }',
         "template.template.timeout is an attribute: write `timeout = ...`, not `timeout { ... }`"),
    ],
)  # fmt: skip
def test_a_name_the_provider_lacks_fails_naming_file_resource_path_and_nearest_names(
    schema_index: SchemaIndex, tmp_path: Path, original: str, broken: str, expected: str
):
    assert check([write(tmp_path, JOB)], schema_index).problems == [], "the unbroken example must pass"
    assert original in JOB

    problems = check([write(tmp_path, JOB.replace(original, broken, 1))], schema_index).problems

    assert problems == [f"main.tf: google_cloud_run_v2_job.worker: {expected}"]


def test_a_resource_type_the_provider_lacks_fails_with_the_nearest_type(schema_index: SchemaIndex, tmp_path: Path):
    path = write(tmp_path, JOB.replace("google_cloud_run_v2_job", "google_cloud_run_v2_jobs"))

    assert check([path], schema_index).problems == [
        "main.tf: google_cloud_run_v2_jobs.worker: (type) hashicorp/google 6.50.0 has no resource"
        " google_cloud_run_v2_jobs; nearest: google_cloud_run_v2_job, google_cloud_run_v2_service,"
        " google_cloud_run_v2_job_iam_policy"
    ]


def test_a_data_source_the_provider_lacks_fails_with_the_nearest_name(schema_index: SchemaIndex, tmp_path: Path):
    path = write(tmp_path, 'data "google_storage_project_service_acount" "gcs" {}\n')

    (problem,) = check([path], schema_index).problems

    assert problem.startswith("main.tf: data.google_storage_project_service_acount.gcs: (type) hashicorp/google")
    assert "; nearest: google_storage_project_service_account, " in problem


def test_schema_is_of_a_provider_release_versions_tf_allows(schema_index: SchemaIndex, tf: Terraform):
    """A schema of a release outside the constraints would check the module against the wrong provider."""
    (terraform,) = tf.terraform
    (required,) = terraform["required_providers"]
    version = Version(schema_index.provider_version)
    for name in ("google", "google-beta"):
        constraint = required[name]["version"].replace("~>", "~=")  # Terraform's pessimistic operator is PEP 440's
        assert version in SpecifierSet(constraint), f"{name} {constraint} excludes the schema's {version}"


def write(folder: Path, text: str) -> Path:
    path = folder / "main.tf"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ terraform fmt --


def test_tf_files_are_formatted_as_terraform_fmt_writes_them():
    terraform = find_tool("terraform", how="install Terraform (https://developer.hashicorp.com/terraform/install)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-no-color", *map(str, TF_FILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"run `terraform fmt` on:\n{result.stdout}{result.stderr}"
