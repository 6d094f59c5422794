"""RoboScape-R world models (section 3.1): the action model (the policy's environment) and the text
model (the golden trajectory whose goal frame defines the reward).

  model.py        WorldModel: token embedding, ST transformer, factored logits, done head
  transformer.py  the spatial-temporal block with control cross-attention
  losses.py       Eqs. (2)-(4) and token/done metrics
  masking.py      MaskGIT training masks and the cosine schedule
  sampling.py     predict_next_frame, rollout (lax.scan), golden_trajectory (Eq. 6)
  data.py         fixed-length training windows from token-cache episodes
  train.py        train_and_evaluate
"""
