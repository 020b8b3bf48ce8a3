"""Tests of imagelake.synthetic (a package, so module names don't clash with other folders')."""
