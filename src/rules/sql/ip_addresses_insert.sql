INSERT INTO ip_addresses (ip, version, ip_hex)
SELECT unnest($1::VARCHAR[]), nullif(unnest($2::INTEGER[]), 0), nullif(unnest($3::VARCHAR[]), '')
