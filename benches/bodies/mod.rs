//! The callback bodies the body benches share (benches/mask.rs,
//! benches/contract.rs): one payment provider's event, batched to a size.

/// One delivery of a payment provider's webhook: ids, amounts, timestamps,
/// a customer with PII in selected fields, line items with card numbers,
/// and free text where the detectors find more.
pub fn event(i: usize) -> String {
    format!(
        r#"{{
  "id": "evt_{i:08}",
  "type": "payment.succeeded",
  "created": 1715760000,
  "created_ms": 1715760000123,
  "livemode": false,
  "data": {{
    "object": {{
      "id": "pay_3NqLkx2eZvKYlo2C{i:06}",
      "amount": 12999,
      "currency": "cny",
      "status": "succeeded",
      "order_no": "2024051512{i:07}",
      "customer": {{
        "id": "cus_{i:06}",
        "name": "张三 Zhang San",
        "email": "zhang.san{i}@example.com",
        "phone": "+86 138 {:04} 5678",
        "address": {{ "city": "上海", "line1": "No. {i} Century Ave", "postal_code": "200120" }}
      }},
      "items": [
        {{ "sku": "SKU-{i:05}-A", "qty": 2, "price": 49.99, "card_number": "4111 1111 1111 1111" }},
        {{ "sku": "SKU-{i:05}-B", "qty": 1, "price": 30.01, "card_number": "5555555555554444" }}
      ],
      "note": "Customer asked to call 13912345678 or mail billing@example.org before 2024-05-16; ID 11010519491231002X on file.",
      "metadata": {{ "trace": "4bf92f3577b34da6a3ce929d0e0e4736", "retries": 0, "ratio": 1.0e-3 }}
    }}
  }}
}}"#,
        i % 10_000
    )
}

/// A batch body of about `size` bytes (a JSON array of events, the way
/// providers batch deliveries).
pub fn body(size: usize) -> Vec<u8> {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&event(i));
        i += 1;
    }
    out.push(']');
    out.into_bytes()
}
