//! The tier of every piece of data: `x-persist`, then the engine label `persist.tier`, then one table of
//! built-in rules, then `important`.
