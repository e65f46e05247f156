#!/bin/bash
# Usage: seed-flows.sh PORT OUTDIR — the README's curl steps (First steps, Datasets, Segments, From audiences to
# SQL, the Query Service's HTTP API) against one server, every answer saved as OUTDIR/<step>.body and each step's
# status and seconds in OUTDIR/timings. The server was started with AUDIENCEHUB_BOOTSTRAP_ORG_ID/CLIENT_ID/
# CLIENT_SECRET as below and `audiencehub orgs tenant-id BYHAND00000000000000001@AdobeOrg demoemea`.
# Written for the by-hand check of issue 7 (docs/seed-flows-by-hand.md).
set -u
PORT=$1; OUT=$2; mkdir -p $OUT; : > $OUT/timings
H=http://127.0.0.1:$PORT
CID=byhandclient; SECRET=byhandsecret123456; ORG=BYHAND00000000000000001@AdobeOrg

now() { date +%s.%N; }
# call NAME curl-args...: saves body to $OUT/NAME.body, records code and seconds
call() {
  local name=$1; shift
  local t0=$(now)
  local code=$(curl -s -o $OUT/$name.body -w '%{http_code}' "$@")
  local t1=$(now)
  printf '%-28s %s %6.2f\n' $name $code $(echo "$t1 - $t0" | bc) >> $OUT/timings
  echo "$name $code"
}
# poll NAME URL JQ TERMINAL_REGEX: polls until the jq value matches, saves the last body
poll() {
  local name=$1 url=$2 expr=$3 re=$4
  local t0=$(now) v=""
  for i in $(seq 1 1200); do
    curl -s -o $OUT/$name.body "$url" "${AUTH[@]}"
    v=$(jq -r "$expr" $OUT/$name.body 2>/dev/null)
    [[ "$v" =~ $re ]] && break
    sleep 0.25
  done
  local t1=$(now)
  printf '%-28s %s %6.2f\n' $name "$v" $(echo "$t1 - $t0" | bc) >> $OUT/timings
  echo "$name -> $v"
}

# 1. token
TOKEN=$(curl -s -X POST $H/ims/token/v3 -d grant_type=client_credentials \
  -d client_id=$CID -d client_secret=$SECRET -d scope=openid | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
AUTH=(-H "Authorization: Bearer $TOKEN" -H "x-api-key: $CID" -H "x-gw-ims-org-id: $ORG" -H 'x-sandbox-name: prod')
JSON=(-H 'Content-Type: application/json')

# 2. upload two audience files
cat > $OUT/example.csv <<'EOF'
ppid,list_id,delete,process_consent
alice@example.com,L1,0,yes
 Bob@Example.com ,L2,0,no
carol@example.com,L1,1,yes
dave@example.com,L3,0,yes
not-an-email,L1,0,yes
eve@example.com,L2,abc,yes
,L1,0,yes
frank@example.com,L1,0
"gina@example.com",L4,2.5,yes
EOF
printf 'ppid,list_id,delete,process_consent\nalice@example.com,N1,0,yes\nbob@example.com,N1,0,yes\ndave@example.com,N2,0,yes\ngina@example.com,N2,0,yes\n' > $OUT/second.csv
call upload1 -X PUT $H/data/foundation/connectors/landingzone/dlz-user-container/activation/sample-source/example.csv "${AUTH[@]}" --data-binary @$OUT/example.csv
call upload2 -X PUT $H/data/foundation/connectors/landingzone/dlz-user-container/activation/sample-source/second.csv "${AUTH[@]}" --data-binary @$OUT/second.csv

# 3. create the external audiences
mkaud() { # name path
cat <<EOF
{"name": "$1", "description": "A sample version of an external audience",
 "fields": [{"name": "ppid", "type": "string", "identityNs": "email"},
            {"name": "list_id", "type": "string", "labels": ["core/C2", "custom/deep"]},
            {"name": "delete", "type": "number"}, {"name": "process_consent", "type": "string"}],
 "sourceSpec": {"params": {"path": "$2", "type": "file", "sourceType": "Cloud Storage", "cloudType": "DLZ"}},
 "ttlInDays": "40", "labels": ["core/C1"], "audienceType": "people", "originName": "CUSTOM_UPLOAD"}
EOF
}
call aud1_create -X POST $H/data/core/ais/external-audience/ "${AUTH[@]}" "${JSON[@]}" -d "$(mkaud Loyalty activation/sample-source/example.csv)"
call aud2_create -X POST $H/data/core/ais/external-audience/ "${AUTH[@]}" "${JSON[@]}" -d "$(mkaud Newsletter activation/sample-source/second.csv)"
OP1=$(jq -r .operationId $OUT/aud1_create.body); OP2=$(jq -r .operationId $OUT/aud2_create.body)
poll aud1_op $H/data/core/ais/external-audience/operations/$OP1 .status 'SUCCESS|FAILED'
poll aud2_op $H/data/core/ais/external-audience/operations/$OP2 .status 'SUCCESS|FAILED'
A1=$(jq -r .audienceId $OUT/aud1_op.body); A2=$(jq -r .audienceId $OUT/aud2_op.body)
echo "A1=$A1 A2=$A2"

# 5. runs: README's body first (default threshold 5%: expected to fail with these rejects), then a tolerant one
call run1a -X POST $H/data/core/ais/external-audience/$A1/runs "${AUTH[@]}" "${JSON[@]}" -d '{"dataFilterStartTime": 764245635}'
R=$(jq -r .runId $OUT/run1a.body)
poll run1a_done $H/data/core/ais/external-audience/$A1/runs/$R .status 'SUCCESS|FAILED'
call run1a_errors $H/data/core/ais/external-audience/$A1/runs/$R/errors "${AUTH[@]}"
call run1b -X POST $H/data/core/ais/external-audience/$A1/runs "${AUTH[@]}" "${JSON[@]}" -d '{"dataFilterStartTime": 764245635, "errorThresholdPercent": 80}'
R1=$(jq -r .runId $OUT/run1b.body)
poll run1b_done $H/data/core/ais/external-audience/$A1/runs/$R1 .status 'SUCCESS|FAILED'
call run1b_errors $H/data/core/ais/external-audience/$A1/runs/$R1/errors "${AUTH[@]}"
call aud1_members "$H/data/core/ais/external-audience/$A1/members?limit=10" "${AUTH[@]}"
call run2 -X POST $H/data/core/ais/external-audience/$A2/runs "${AUTH[@]}" "${JSON[@]}" -d '{"dataFilterStartTime": 764245635}'
R2=$(jq -r .runId $OUT/run2.body)
poll run2_done $H/data/core/ais/external-audience/$A2/runs/$R2 .status 'SUCCESS|FAILED'
call aud1_get $H/data/core/ais/external-audience/$A1 "${AUTH[@]}"

# Datasets, batches and profiles
SR=$H/data/foundation/schemaregistry
call sr_stats "${AUTH[@]}" $SR/stats
call fg_create "${AUTH[@]}" -X POST $SR/tenant/fieldgroups -d '{"title": "Audience Membership", "type": "object",
  "meta:intendedToExtend": ["https://ns.adobe.com/xdm/context/profile"],
  "definitions": {"membership": {"properties": {"_demoemea": {"type": "object", "properties": {
    "audienceMembershipId": {"type": "string"}, "audienceMembershipName": {"type": "string"},
    "country": {"type": "string"}, "score": {"type": "integer"}}}}}},
  "allOf": [{"$ref": "#/definitions/membership"}]}'
FG=$(jq -r '."$id"' $OUT/fg_create.body)
call schema_create "${AUTH[@]}" -X POST $SR/tenant/schemas -d '{"title": "Audience Export for CJA Schema", "type": "object",
  "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}, {"$ref": "'$FG'"}]}'
SCH=$(jq -r '."$id"' $OUT/schema_create.body); SCHALT=$(jq -r '."meta:altId"' $OUT/schema_create.body)
call desc_create "${AUTH[@]}" -X POST $SR/tenant/descriptors -d '{"@type": "xdm:descriptorIdentity",
  "xdm:sourceSchema": "'$SCH'", "xdm:sourceVersion": 1, "xdm:sourceProperty": "/personID",
  "xdm:namespace": "Email", "xdm:property": "xdm:code", "xdm:isPrimary": true}'
call schema_union "${AUTH[@]}" -X PATCH "$SR/tenant/schemas/$SCHALT" -d '[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]'
call ds_create "${AUTH[@]}" -X POST $H/data/foundation/catalog/dataSets -d '{"name": "Audience Export for CJA",
  "schemaRef": {"id": "'$SCH'", "contentType": "application/vnd.adobe.xed+json;version=1"},
  "tags": {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]}}'
DS=$(jq -r '.[0]' $OUT/ds_create.body | sed 's#@/dataSets/##')
cat > $OUT/cja.json <<'EOF'
[{"personID": "alice@example.com", "_demoemea": {"country": "US", "score": 7}},
 {"personID": "BOB@example.com", "_demoemea": {"country": "US", "score": "42"}},
 {"personID": "dave@example.com", "_demoemea": {"country": "FR", "score": 3}},
 {"personID": "gina@example.com", "_demoemea": {"country": "US"}},
 {"personID": "hank@example.com", "_demoemea": {"country": "US", "score": 1}}]
EOF
cat > $OUT/bad.json <<'EOF'
{"personID": "ivan@example.com", "_demoemea": {"country": "US", "favouriteColour": "red"}}
{"personID": "jo@example.com", "_demoemea": {"score": "1.5"}}
{"personID": "kim@example.com"}
EOF
call batch1 "${AUTH[@]}" -X POST $H/data/foundation/import/batches -d '{"datasetId": "'$DS'", "inputFormat": {"format": "json"}}'
B1=$(jq -r .id $OUT/batch1.body)
call batch1_put "${AUTH[@]}" -X PUT -H 'Content-Type: application/octet-stream' --data-binary @$OUT/cja.json $H/data/foundation/import/batches/$B1/datasets/$DS/files/cja.json
call batch1_complete "${AUTH[@]}" -X POST "$H/data/foundation/import/batches/$B1?action=COMPLETE"
poll batch1_done $H/data/foundation/catalog/batches/$B1 ".\"$B1\".status" 'success|failed'
call batch2 "${AUTH[@]}" -X POST $H/data/foundation/import/batches -d '{"datasetId": "'$DS'", "inputFormat": {"format": "json"}}'
B2=$(jq -r .id $OUT/batch2.body)
call batch2_put "${AUTH[@]}" -X PUT -H 'Content-Type: application/octet-stream' --data-binary @$OUT/bad.json $H/data/foundation/import/batches/$B2/datasets/$DS/files/bad.json
call batch2_complete "${AUTH[@]}" -X POST "$H/data/foundation/import/batches/$B2?action=COMPLETE"
poll batch2_done $H/data/foundation/catalog/batches/$B2 ".\"$B2\".status" 'success|failed'
call batch2_failed "${AUTH[@]}" $H/data/foundation/export/batches/$B2/failed
call batch2_failed_file "${AUTH[@]}" "$H/data/foundation/export/batches/$B2/failed?path=failed_records_0.json"
call entity_bob "${AUTH[@]}" "$H/data/core/ups/access/entities?schema.name=_xdm.context.profile&entityId=bob@example.com&entityIdNS=Email"

# Segments
call seg_create "${AUTH[@]}" -X POST $H/data/core/ups/segment/definitions -d '{
    "name": "US loyal readers",
    "expression": {"type": "PQL", "format": "pql/text",
      "value": "_demoemea.country = \"US\" and inSegment(\"'$A1'\") and inSegment(\"'$A2'\")"},
    "schema": {"name": "_xdm.context.profile"},
    "evaluationInfo": {"batch": {"enabled": true}, "continuous": {"enabled": false}, "synchronous": {"enabled": false}}}'
SEG=$(jq -r .id $OUT/seg_create.body)
call seg2_create "${AUTH[@]}" -X POST $H/data/core/ups/segment/definitions -d '{
    "name": "High scorers or newsletter",
    "expression": {"type": "PQL", "format": "pql/text",
      "value": "_demoemea.score > 5 or (inSegment(\"'$A2'\") and not inSegment(\"'$A1'\"))"},
    "schema": {"name": "_xdm.context.profile"},
    "evaluationInfo": {"batch": {"enabled": true}, "continuous": {"enabled": false}, "synchronous": {"enabled": false}}}'
SEG2=$(jq -r .id $OUT/seg2_create.body)
call seg_bad "${AUTH[@]}" -X POST $H/data/core/ups/segment/definitions -d '{"name": "bad",
    "expression": {"type": "PQL", "format": "pql/text", "value": "inSegment(\"x\") and and"},
    "schema": {"name": "_xdm.context.profile"}}'
call segjob "${AUTH[@]}" -X POST $H/data/core/ups/segment/jobs -d '[{"segmentId": "'$SEG'"}, {"segmentId": "'$SEG2'"}]'
J=$(jq -r .id $OUT/segjob.body)
poll segjob_done $H/data/core/ups/segment/jobs/$J .status 'SUCCEEDED|FAILED'
call entity_alice "${AUTH[@]}" "$H/data/core/ups/access/entities?schema.name=_xdm.context.profile&entityId=alice@example.com&entityIdNS=Email"
call audiences "${AUTH[@]}" "$H/data/core/ups/audiences?sort=name:asc"

# From audiences to SQL
call ds_union -X POST "$H/data/foundation/catalog/dataSets?requestDataSource=true" "${AUTH[@]}" "${JSON[@]}" \
  -d '{"name": "Segment Export Job Dataset for CJA",
       "schemaRef": {"id": "_xdm.context.profile__union", "contentType": "application/vnd.adobe.xed+json;version=1"},
       "fileDescription": {"persistet": true, "containerFormat": "parquet", "format": "parquet"}}'
DSU=$(jq -r '.[0]' $OUT/ds_union.body | sed 's#@/dataSets/##')
call export -X POST $H/data/core/ups/export/jobs "${AUTH[@]}" "${JSON[@]}" -d '{
    "fields": "identityMap",
    "filter": {"segments": [{"segmentId": "'$A1'", "segmentNs": "ups", "status": ["realized"],
                             "segmentId": "'$SEG'", "segmentNs": "ups", "status": ["realized"]}]},
    "destination": {"datasetId": "'$DSU'", "segmentPerBatch": false},
    "schema": {"name": "_xdm.context.profile"}}'
E=$(jq -r .id $OUT/export.body)
poll export_done $H/data/core/ups/export/jobs/$E .status 'SUCCEEDED|FAILED'
call export2 -X POST $H/data/core/ups/export/jobs "${AUTH[@]}" "${JSON[@]}" -d '{
    "fields": "identityMap,_demoemea.country,_demoemea.score",
    "filter": {"segments": [{"segmentId": "'$SEG2'", "segmentNs": "ups", "status": ["realized"]}]},
    "destination": {"datasetId": "'$DSU'", "segmentPerBatch": false},
    "schema": {"name": "_xdm.context.profile"}}'
E2=$(jq -r .id $OUT/export2.body)
poll export2_done $H/data/core/ups/export/jobs/$E2 .status 'SUCCEEDED|FAILED'
call connparams $H/data/foundation/query/connection_parameters "${AUTH[@]}"
call mergepolicies "$H/data/core/ups/config/mergePolicies" "${AUTH[@]}"
MP=$(jq -r '.children[] | select(.default==true) | .id' $OUT/mergepolicies.body | tr - _)

# query NAME BODY: POST, poll, download csv+json
query() {
  local name=$1 body=$2
  call q_$name -X POST $H/data/foundation/query/queries "${AUTH[@]}" "${JSON[@]}" -d "$body"
  local id=$(jq -r .id $OUT/q_$name.body)
  [ "$id" = null ] && return
  poll q_${name}_done $H/data/foundation/query/queries/$id .state 'SUCCESS|FAILED|KILLED|TIMEOUT'
  call q_${name}_csv "$H/data/foundation/query/queries/$id/results" "${AUTH[@]}"
  call q_${name}_json "$H/data/foundation/query/queries/$id/results?format=json" "${AUTH[@]}"
}
SEEDSQL="SELECT ROW_NUMBER() OVER (ORDER BY key)::text as _id, personID, key as audienceMembershipId FROM (SELECT identityMap['Email'][0].id AS personID, explode(segmentMembership.ups) FROM segment_export_job_dataset_for_cja) WHERE value.status = 'realized' AND (key = '$SEG') ORDER BY personID"
query seed "$(jq -n --arg s "$SEEDSQL" '{dbName: "prod:all", sql: $s, name: "seed query"}')"
query show '{"sql": "SHOW TABLES"}'
query ds "$(jq -n '{sql: "SELECT personID, _demoemea.country AS country, _demoemea.score AS score, _demoemea FROM audience_export_for_cja ORDER BY personID"}')"
query audds "$(jq -n '{sql: "SELECT * FROM loyalty_dataset ORDER BY 1"}')"
query agg "$(jq -n '{sql: "SELECT _demoemea.country AS country, count(*) AS n, sum(_demoemea.score) AS total, avg(_demoemea.score) AS mean FROM audience_export_for_cja GROUP BY 1 ORDER BY 1"}')"
query size "$(jq -n --arg t "profile_snapshot_export_$MP" '{sql: ("SELECT identityMap[\u0027Email\u0027][0].id AS email, size(segmentMembership) AS ns, size(map_keys(segmentMembership)) AS ns2 FROM " + $t + " ORDER BY email")}')"
query profiles "$(jq -n --arg t "profile_snapshot_export_$MP" '{sql: ("SELECT identityMap[\u0027Email\u0027][0].id AS email, _demoemea.country AS country, _demoemea.score AS score, segmentMembership FROM " + $t + " ORDER BY email")}')"
query members "$(jq -n --arg t "profile_snapshot_export_$MP" '{sql: ("SELECT identityMap[\u0027Email\u0027][0].id AS email, ns, x.key AS aud, x.value.status AS status FROM (SELECT identityMap, explode(segmentMembership) AS (ns, auds) FROM " + $t + ") LATERAL VIEW explode(auds) x AS key, value ORDER BY email, ns, status")}')"
query members2 "$(jq -n --arg t "profile_snapshot_export_$MP" '{sql: ("SELECT email, ns, aud, st.status AS status FROM (SELECT identityMap[\u0027Email\u0027][0].id AS email, ns, explode(auds) AS (aud, st) FROM (SELECT identityMap, explode(segmentMembership) AS (ns, auds) FROM " + $t + ")) ORDER BY email, ns, status")}')"
query ctas "$(jq -n '{sql: "SELECT personID AS person, _demoemea.country AS country, _demoemea.score AS score FROM audience_export_for_cja WHERE _demoemea.country = \u0027US\u0027", ctasParameters: {datasetName: "US People"}}')"
query insert "$(jq -n '{sql: "SELECT personID AS person, _demoemea.country AS country, _demoemea.score * 10 AS score FROM audience_export_for_cja WHERE _demoemea.country <> \u0027US\u0027", insertIntoParameters: {datasetName: "US People"}}')"
query readback "$(jq -n '{sql: "SELECT person, country, score FROM us_people ORDER BY person, score"}')"
query params "$(jq -n '{sql: "SELECT person FROM us_people WHERE score > $min ORDER BY person", queryParameters: {min: "5"}}')"
query bad '{"sql": "SELECT nosuchcolumn FROM us_people"}'
query copy "$(jq -n '{sql: "COPY us_people TO \u0027/tmp/x.csv\u0027"}')"
call cja -X POST $H/data/core/ups/cja/transform "${AUTH[@]}" "${JSON[@]}" \
  -d '{"datasetId": "'$DSU'", "personIdField": "identityMap['"'"'Email'"'"'][0].id",
       "audienceIds": ["'$SEG'", "'$A1'"], "tenant": "_demoemea"}'
call batches "${AUTH[@]}" "$H/data/foundation/catalog/batches?dataSet=$DSU"
echo done
