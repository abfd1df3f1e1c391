import pytest

pytestmark = pytest.mark.django_db


def test_a_new_server_has_both_links(server):
    assert sorted(server.links.values_list("kind", flat=True)) == ["admin_workstation", "media_blender"]
