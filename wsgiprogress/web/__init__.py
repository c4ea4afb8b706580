"""
Web
===

The HTTP faces both front doors serve in front of the application: the
progress probe (:mod:`~wsgiprogress.web.probe`, in the dialects of
:mod:`~wsgiprogress.web.dialects`), the mailbox endpoints
(:mod:`~wsgiprogress.web.mailbox`, with Nchan's long-poll in
:mod:`~wsgiprogress.web.nchan`), the operator dashboard
(:mod:`~wsgiprogress.web.dashboard`), event streams
(:mod:`~wsgiprogress.web.event_stream`, :mod:`~wsgiprogress.web.sse`), shared
answers (:mod:`~wsgiprogress.web.responses`), and the one composition and
router of them all (:mod:`~wsgiprogress.web.front`).
"""
