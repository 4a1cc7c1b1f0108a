-- POST a 1 MiB body to /upload on every request; wrk adds Content-Length.
wrk.method = "POST"
wrk.path = "/upload"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
