-- E-mail quick campaigns (R-QC-1) go through the wave sender: a wave is either a campaign
-- activity's or a quick campaign's, keyed by that bulkoperation's id. `wave.activityid`
-- therefore no longer references `campaignactivity`; the store joins both sources. Each
-- engine drops the reference its own way.
SELECT 1;
