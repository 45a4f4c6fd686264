-- What the LLM cost (docs/architecture.md, "Outbound calls" and "Status"): OpenRouter
-- answers `usage.cost` in USD with
-- every completion; the service saves generation plus split on the message
-- (save_generated_message's p_ai_cost_usd) and mark_message_part_sent sums it into the run's
-- metrics (`ai_cost_usd`) next to the tokens. Additive: a column the product does not have.
-- numeric, not float: a sum of many small amounts never drifts.

alter table campaign_messages add column if not exists ai_cost_usd numeric;
