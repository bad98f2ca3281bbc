from __future__ import annotations

from django.urls import path

from records import data_protection_views, views
from records.models import RecordKind

app_name = "records"

urlpatterns = []
for kind, plural in (
    (RecordKind.CLIENT, "clients"),
    (RecordKind.CONTACT, "contacts"),
    (RecordKind.CANDIDATE, "candidates"),
):
    urlpatterns += [
        path(f"{plural}/", views.record_list, {"kind": kind.value}, name=f"{kind.value}_list"),
        path(
            f"{plural}/new/", views.record_create, {"kind": kind.value}, name=f"{kind.value}_create"
        ),
        path(
            f"{plural}/<int:pk>/",
            views.record_detail,
            {"kind": kind.value},
            name=f"{kind.value}_detail",
        ),
        path(
            f"{plural}/<int:pk>/edit/",
            views.record_edit,
            {"kind": kind.value},
            name=f"{kind.value}_edit",
        ),
    ]

urlpatterns += [
    path(
        "candidates/<int:pk>/erase/",
        data_protection_views.candidate_erase_view,
        name="candidate_erase",
    ),
    path(
        "candidates/<int:pk>/export/",
        data_protection_views.candidate_export_view,
        name="candidate_export",
    ),
]
