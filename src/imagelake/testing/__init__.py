"""Test helpers shipped with imagelake, for imagelake's own tests and for plugin authors.

:class:`FormatConformance` is a pytest base class that checks a raw format plugin
(registration, declarations, identification, metadata, arrays, errors)::

    from imagelake.testing import FormatConformance

    class TestMyFormat(FormatConformance):
        format_name = "myvendor"

        @pytest.fixture
        def sample_path(self, tmp_path):
            return make_sample(tmp_path)

The checks are also plain functions (``check_arrays``, ``check_rejects``...) raising
``AssertionError`` with messages that never show patient identity values. This module
imports pytest: import it from tests only.
"""

from __future__ import annotations

from imagelake.testing._conformance import (
    FormatConformance,
    check_arrays,
    check_content,
    check_corrupt,
    check_declarations,
    check_expected_meta,
    check_identifies,
    check_missing_file,
    check_no_phi_leak,
    check_registered,
    check_rejects,
    default_foreign_paths,
)

__all__ = [
    "FormatConformance",
    "check_arrays",
    "check_content",
    "check_corrupt",
    "check_declarations",
    "check_expected_meta",
    "check_identifies",
    "check_missing_file",
    "check_no_phi_leak",
    "check_registered",
    "check_rejects",
    "default_foreign_paths",
]
