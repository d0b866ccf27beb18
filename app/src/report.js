// The service report as the customer reads it before signing, in the customer's language:
// the sections and fields of the PDF preview (report-print/src/content.rs, which the Rust
// SDK's `preview` renders), drawn from the job's JSON (job.js). Times in the phone's zone.

import { tIn } from "./i18n.js"
import { charges } from "./job.js"

/** The report of `job` (its JSON) in `lang`, as a `<section id="report">`; `el` makes nodes. */
export function reportView(job, lang, el) {
  const t = (key, vars) => tIn(lang, key, vars)
  const locale = lang === "zh" ? "zh-CN" : "en-GB"
  const at = ms => (ms === null || ms === undefined ? t("r_not_recorded") : new Date(ms).toLocaleString(locale))
  const orNone = s => (s === null || s === undefined || String(s).trim() === "" ? t("r_not_recorded") : s)
  const money = minor => {
    const sign = minor < 0 ? "-" : ""
    const abs = Math.abs(minor)
    return `${job.billing.currency} ${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`
  }
  const section = (id, title, ...rows) =>
    el("section", { class: "report-section", "data-section": id }, el("h4", { text: title }), el("dl", {}, ...rows.flat(Infinity)))
  const field = (name, value) => [el("dt", { text: name }), el("dd", { text: String(value) })]

  const v = job.visit
  const parts = job.parts.length
    ? [
        el("dt", { text: t("r_parts_replaced") }),
        el(
          "dd",
          {},
          el(
            "table",
            { class: "parts" },
            el("tr", {}, ...["r_part", "r_part_number", "r_qty", "r_unit_price", "r_amount", "r_warranty"].map(k => el("th", { text: t(k) }))),
            ...job.parts.map(p =>
              el(
                "tr",
                {},
                el("td", { text: p.name }),
                el("td", { text: [p.part_number, p.specification].filter(Boolean).join(" / ") }),
                el("td", { text: String(p.quantity) }),
                el("td", { text: money(p.unit_price) }),
                el("td", { text: money(p.quantity * p.unit_price) }),
                el("td", { text: t(p.warranty ? "r_yes" : "r_no") }),
              ),
            ),
          ),
        ),
      ]
    : field(t("r_parts_replaced"), t("r_none"))
  const c = charges(job)
  const fees =
    job.billing.mode === "warranty"
      ? [field(t("r_billing"), t("r_billing_warranty")), field(t("r_customer_pays"), money(0))]
      : [
          field(t("r_billing"), t("r_billing_billable")),
          field(t("r_customer_pays"), money(c.customerPays)),
          field(t("r_invoice"), orNone(job.billing.invoice_number)),
        ]
  const h = job.handover
  const attachments = (job.attachments ?? []).filter(a => a.kind !== "receipt")
  return el(
    "section",
    { id: "report", lang: lang === "zh" ? "zh-CN" : "en", "data-lang": lang },
    el("h3", { text: t("r_title") }),
    el("p", { class: "help", text: t("r_preview") }),
    section(
      "customer",
      t("r_customer_branch"),
      field(t("r_branch"), job.branch_id),
      field(t("r_job"), job.job_id),
      field(t("r_kind"), t(`r_kind_${job.kind}`)),
      field(t("r_customer"), job.customer.name),
      field(t("r_contact"), job.customer.contact),
      field(t("r_site"), job.customer.site_address),
    ),
    section(
      "product",
      t("r_product"),
      field(t("r_model"), job.product.model),
      field(t("r_serial"), job.product.serial),
      field(t("r_product_type"), job.product.product_type),
      field(t("r_purchased"), orNone(job.product.purchase_date)),
      field(t("r_warranty_end"), orNone(job.product.warranty_end)),
    ),
    section(
      "visit",
      t("r_request_visit"),
      field(t("r_received"), at(job.request.received_at)),
      field(t("r_fault"), job.request.fault_description),
      field(t("r_requested_arrival"), at(job.request.requested_arrival)),
      field(t("r_appointment"), at(v.appointment)),
      field(t("r_arrival"), at(v.arrival)),
      field(t("r_safety"), v.safety_briefing ? `${at(v.safety_briefing.at)} · ${v.safety_briefing.by} · ${v.safety_briefing.notes}` : t("r_not_recorded")),
      field(t("r_check_out"), v.check_out ? `${at(v.check_out.at)} · ${v.check_out.by} · ${v.check_out.note}` : t("r_not_recorded")),
    ),
    section(
      "diagnosis",
      t("r_diagnosis"),
      field(t("r_fault_cause"), orNone(job.diagnosis.fault_cause)),
      field(t("r_solution"), orNone(job.diagnosis.solution)),
      job.diagnosis.fault_category ? field(t("r_fault_category"), job.diagnosis.fault_category) : [],
      v.training ? field(t("r_training"), `${at(v.training.at)} · ${v.training.trainees.join(", ")} · ${v.training.topics}`) : [],
    ),
    section(
      "work",
      t("r_parts_labour"),
      parts,
      field(t("r_labour"), t("r_minutes", { minutes: job.labour.minutes, rate: money(job.labour.rate_per_hour) })),
      field(t("r_travel"), `${t("r_km", { km: (job.travel.distance_m / 1000).toFixed(1) })} · ${money(job.travel.cost)}`),
    ),
    section(
      "charges",
      t("r_charges"),
      field(t("r_parts_total"), money(c.parts)),
      field(t("r_parts_under_warranty"), money(c.partsUnderWarranty)),
      field(t("r_labour_fee"), money(c.labour)),
      field(t("r_travel_fee"), money(c.travel)),
      field(t("r_cost"), money(c.cost)),
      fees,
    ),
    section(
      "handover",
      t("r_handover"),
      h ? [field(t("r_items"), h.items), field(t("r_reason"), h.reason)] : field(t("r_handover"), t("r_no_handover")),
    ),
    attachments.length
      ? section("attachments", t("r_attachments"), ...attachments.map(a => field(t(`r_attachment_${a.kind}`), a.name)))
      : null,
    section("opinion", t("r_opinion"), field(t("r_opinion"), orNone(job.customer_opinion))),
  )
}
