// Godel Guardrail: request-body inspection for NGINX (njs 0.7+), used by nginx/nginx.conf.
//
// For each request that passed the edge rate limit:
//   1. the body is already in memory (client_body_buffer_size = client_max_body_size);
//   2. a subrequest to /_godel/inspect sends it, unchanged, to Godel's POST /v1/inspect
//      (docs/inspect-api.yaml);
//   3. Godel's x-godel-decision says what to do:
//        allow     -> @godel_upstream sends the original body to the app;
//        redact    -> @godel_upstream_redacted sends Godel's answer body instead;
//        block / throttle / too_large -> Godel's status, JSON body and headers go to the client;
//   4. anything else (Godel down, a timeout, a 401, an error page) is not a decision:
//      503 when $godel_failure_mode is "closed" (the default), the original body goes on
//      unscanned when it is "open".
// Bodies are never logged.

const crypto = require('crypto');

// Headers of a Godel refusal that the client should see.
const RELAYED = ['Retry-After', 'RateLimit', 'RateLimit-Policy', 'X-Request-Id'];

function identity(r) {
    // The caller for Godel's token bucket: a digest of the API key (the key itself never
    // leaves NGINX), else empty so Godel falls back to the client address.
    const key = r.headersIn['X-Api-Key'];
    if (!key) {
        return '';
    }
    return 'key:' + crypto.createHash('sha256').update(key).digest('hex').slice(0, 32);
}

function failed(r, why) {
    if (r.variables.godel_failure_mode === 'open') {
        r.warn('godel inspect failed (' + why + '); failure mode open: forwarding unscanned');
        r.internalRedirect('@godel_upstream');
        return;
    }
    r.error('godel inspect failed (' + why + '); failure mode closed: 503');
    r.headersOut['Content-Type'] = 'application/json';
    r.return(503, '{"error":"request inspection unavailable"}');
}

async function inspect(r) {
    // requestBuffer is undefined when there is no body, and also when the body went to a
    // temporary file; with equal buffer and body limits that cannot happen, but never
    // forward a body that was not scanned.
    if (r.requestBuffer === undefined) {
        const length = r.headersIn['Content-Length'];
        if ((length && length !== '0') || r.headersIn['Transfer-Encoding']) {
            r.headersOut['Content-Type'] = 'application/json';
            r.return(413, '{"error":"request body too large to inspect"}');
            return;
        }
    }
    r.variables.godel_identity = identity(r);

    let reply;
    try {
        // No body option: the subrequest carries the parent's body as is (bytes, no copy).
        reply = await r.subrequest('/_godel/inspect', {method: 'POST'});
    } catch (e) {
        failed(r, 'subrequest: ' + e);
        return;
    }
    const decision = reply.headersOut['X-Godel-Decision'];
    if (decision === 'allow' && reply.status === 200) {
        r.internalRedirect('@godel_upstream');
        return;
    }
    if (decision === 'redact' && reply.status === 200) {
        const body = reply.responseBuffer;
        if (body === undefined || body === null) {
            failed(r, 'redacted body missing (subrequest_output_buffer_size too small?)');
            return;
        }
        r.variables.godel_body = body;
        // A body Godel decompressed to scan goes on uncompressed.
        const decoded = reply.headersOut['X-Godel-Body-Decoded'] === '1';
        r.variables.godel_content_encoding = decoded ? '' : (r.headersIn['Content-Encoding'] || '');
        r.internalRedirect('@godel_upstream_redacted');
        return;
    }
    if ((decision === 'block' && reply.status === 403)
        || (decision === 'throttle' && reply.status === 429)
        || (decision === 'too_large' && reply.status === 413)) {
        RELAYED.forEach(function (name) {  // njs 0.7 has no for...of
            const value = reply.headersOut[name];
            if (value !== undefined) {
                r.headersOut[name] = value;
            }
        });
        r.headersOut['Content-Type'] = 'application/json';
        r.return(reply.status, reply.responseText || '');
        return;
    }
    failed(r, 'status ' + reply.status + ', decision ' + (decision || 'none'));
}

export default {inspect};
