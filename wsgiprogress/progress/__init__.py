"""
Progress
========

What a request's progress is and where it lives: the entry a probe shows
(:mod:`~wsgiprogress.progress.entry`), the tracker that counts one request
(:mod:`~wsgiprogress.progress.tracker`), the rules that pick tracked requests
(:mod:`~wsgiprogress.progress.tracking`), the storage interface every part
meets at (:mod:`~wsgiprogress.progress.store`) and its in-memory table
(:mod:`~wsgiprogress.progress.table`).  Nothing here knows HTTP endpoints,
servers or Redis.
"""
from __future__ import annotations

from .entry import ProgressEntry
from .ids import IdFinder, is_valid_id
from .store import ProgressStore
from .table import ProgressTable
from .tracker import Tracker
from .tracking import TrackingRules

__all__ = ["IdFinder", "ProgressEntry", "ProgressStore", "ProgressTable", "Tracker",
           "TrackingRules", "is_valid_id"]
