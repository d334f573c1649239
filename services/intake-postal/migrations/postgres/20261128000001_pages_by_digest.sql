-- The pages route serves a page by its digest, and only a scanned page:
-- the store holds letters and uploads under their digests too.
CREATE INDEX postal_pages_sha256 ON postal_pages (sha256);
