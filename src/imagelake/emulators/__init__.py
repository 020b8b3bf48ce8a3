"""Vendor emulators: manifests, the image store, and the manager that runs jobs in VMs.

An emulator is a vendor's reconstruction software in a virtual machine image, described
by a manifest (``emulators/<id>@<version>.yaml``), its image files kept in an
:class:`ImageStore` and verified by sha256 before every boot. The
:class:`EmulatorManager` runs one job per libvirt domain (a fresh overlay on the
read-only image, the job disk, no network, a hard timeout) and always cleans up.
libvirt is needed only by the manager: ``pip install 'imagelake[emulators]'``.
"""

from imagelake.emulators._domain import (
    DOMAIN_PREFIX,
    INTERACTIVE_PREFIX,
    PROGRESS_CHANNEL,
    create_overlay,
    domain_xml,
    overlay_command,
)
from imagelake.emulators._job import (
    EmulatorJobError,
    EmulatorJobResult,
    build_image,
    new_job_id,
    run_emulator_job,
)
from imagelake.emulators._jobdisk import (
    JOB_DISK_LABEL,
    JOB_PROTOCOL,
    JobDiskError,
    JobOutcome,
    JobRequest,
    MissingToolError,
    build_job_disk,
    read_job_disk,
)
from imagelake.emulators._manager import (
    EmulatorError,
    EmulatorManager,
    InteractiveVM,
    VMInfo,
    VMRun,
    default_work_dir,
)
from imagelake.emulators._manifest import (
    ENTRY_POINT_GROUP,
    EmulatorManifest,
    EmulatorRegistry,
    ImageSpec,
    JobSpec,
    MachineSpec,
    ScannerMatch,
    default_manifest_dir,
    load_manifest,
    manifest_from_mapping,
    parse_ref,
)
from imagelake.emulators._store import DIGESTS_FILE, ImageStore, default_image_store

__all__ = [
    "DIGESTS_FILE",
    "DOMAIN_PREFIX",
    "ENTRY_POINT_GROUP",
    "INTERACTIVE_PREFIX",
    "JOB_DISK_LABEL",
    "JOB_PROTOCOL",
    "PROGRESS_CHANNEL",
    "EmulatorError",
    "EmulatorJobError",
    "EmulatorJobResult",
    "EmulatorManager",
    "EmulatorManifest",
    "EmulatorRegistry",
    "ImageSpec",
    "ImageStore",
    "InteractiveVM",
    "JobDiskError",
    "JobOutcome",
    "JobRequest",
    "JobSpec",
    "MachineSpec",
    "MissingToolError",
    "ScannerMatch",
    "VMInfo",
    "VMRun",
    "build_image",
    "build_job_disk",
    "create_overlay",
    "default_image_store",
    "default_manifest_dir",
    "default_work_dir",
    "domain_xml",
    "load_manifest",
    "manifest_from_mapping",
    "new_job_id",
    "overlay_command",
    "parse_ref",
    "read_job_disk",
    "run_emulator_job",
]
