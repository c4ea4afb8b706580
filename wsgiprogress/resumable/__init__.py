"""
Resumable uploads
=================

One upload resource (:class:`~.upload.Upload`), stored durably behind one
interface (:class:`~.storage.UploadStorage`: records beside the bytes in a
directory, :class:`~.storage.DirectoryStorage`, or in Redis with the Redis
backend), that the protocols of
:mod:`wsgiprogress.web.resumable` (tus 1.0, IETF resumable uploads interop
version 6) append to; once every byte is stored, :func:`~.completion.complete`
calls the application once with the request that created it, rebuilt, and
keeps its response.  Setting ``resumable_dir`` turns it on at every front door.

.. code-block:: python

    app = ProgressMiddleware(app, resumable_dir="/var/lib/uploads")
    # tus:  POST /files/  Upload-Length: 3000000  ->  201  Location: /files/<id>
    #       PATCH /files/<id> ... the last one calls app(environ, ...) once with
    #       environ["wsgiprogress.upload"] and the whole body as wsgi.input
"""
from .completion import complete
from .storage import DirectoryStorage, StorageError, UploadStorage
from .upload import Target, Upload, is_upload_id

__all__ = ["DirectoryStorage", "StorageError", "Target", "Upload", "UploadStorage", "complete",
           "is_upload_id"]
